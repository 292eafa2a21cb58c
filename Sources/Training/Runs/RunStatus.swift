// status.json in the run directory: `training`, `completed`, `diverged` or `preempted`, with where and
// why a run stopped, so a script, a sweep or `eval --run` can tell a finished run from a stopped one.
import Foundation

/// JSON cannot hold NaN or ±inf: they become null (the record says why elsewhere).
func jsonSafe(_ value: Any) -> Any {
    switch value {
    case let d as Double: return d.isFinite ? d : NSNull()
    case let f as Float: return f.isFinite ? Double(f) : NSNull()
    case let dictionary as [String: Any]: return dictionary.mapValues(jsonSafe)
    case let array as [Any]: return array.map(jsonSafe)
    default: return value
    }
}

extension RunOutput {
    /// `status.json` in the run directory: `training`, `completed`, `diverged` or `preempted`, with
    /// where it stopped, so a script (or `eval --run`) can tell a finished run from a stopped one.
    public func writeStatus(_ state: String, details: [String: Any] = [:]) throws {
        var record = details
        record["state"] = state
        let data = try JSONSerialization.data(withJSONObject: jsonSafe(record), options: [.prettyPrinted, .sortedKeys])
        try writeDurably(data, to: directory + "/status.json")
    }

    /// Records a stop in status.json; a diverged run also loses any results.json, which could only
    /// describe another run.
    public func recordStop(_ stop: TrainingStop, resumeCommand: String) throws {
        switch stop {
        case let .diverged(epoch, step, reason, lastCheckpoint):
            try? FileManager.default.removeItem(atPath: directory + "/results.json")
            try writeStatus(
                "diverged",
                details: [
                    "epoch": epoch, "step": step, "error": stop.description,
                    "reason": reason, "lastCheckpoint": lastCheckpoint ?? NSNull(),
                ])
        case let .preempted(epoch, step, signal, ranks, checkpoint):
            try writeStatus(
                "preempted",
                details: [
                    "epoch": epoch, "step": step, "signal": signal, "ranksSignalled": ranks,
                    "checkpoint": checkpoint ?? NSNull(), "resume": resumeCommand,
                ])
        }
    }

    /// The newest complete checkpoint folder, if any.
    var newestCheckpoint: String? { (try? Checkpoints.list(checkpointDirectory))?.last }
}
