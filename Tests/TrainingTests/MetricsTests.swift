// metrics.jsonl carries the loss's CE and CAVPT parts (summing to the total) and, with
// eval.valEvery, the few-shot val accuracy, which equals `eval --split val` of the checkpoint.
import Foundation
import Testing

@Suite(.serialized) struct MetricsTests {
    @Test func lossPartsAndValidationAccuracy() throws {
        let out = temporaryDirectory("metrics") + "/run"
        let r = try cavptDist(
            tinyRun.trainArguments(method: "vlp_cavpt", output: out, epochs: 3, extra: ["--set", "eval.valEvery=1"]))
        try #require(r.status == 0, "\(r.stderr)")
        let lines = try metricLines(out)
        #expect(lines.count == 3)
        for line in lines {
            let loss = try #require(line["loss"] as? Double), ce = try #require(line["lossCE"] as? Double)
            let cavpt = try #require(line["lossCAVPT"] as? Double)
            #expect(abs(ce + cavpt - loss) < 1e-9 && cavpt > 0 && ce > 0, "\(line)")
            #expect(line["valAccuracy"] is Double, "\(line)")
        }
        #expect(r.stdout.contains("epoch 3/3  val accuracy"), "\(r.stdout)")
        // The last epoch's val accuracy is what eval reports on the val list with the last checkpoint.
        let val = try #require(lines.last?["valAccuracy"] as? Double)
        let e = try cavptDist(["eval", "--run", out, "--split", "val"])
        try #require(e.status == 0, "\(e.stderr)")
        #expect(e.stdout.contains(String(format: "accuracy %.2f%%", val * 100)), "\(e.stdout) vs \(val)")
        // Without CAVPT there is no CAVPT part; without eval.valEvery no val accuracy.
        let plain = temporaryDirectory("metrics-plain") + "/run"
        try #require(try cavptDist(tinyRun.trainArguments(method: "vpt_deep", output: plain, epochs: 1)).status == 0)
        let line = try #require(try metricLines(plain).first)
        #expect(line["lossCAVPT"] == nil && line["lossCE"] == nil && line["valAccuracy"] == nil)
    }
}
