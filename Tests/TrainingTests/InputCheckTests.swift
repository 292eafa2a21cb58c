// Degenerate and hostile data is refused before the first step, with one line naming the file or
// list: empty lists, a class without training images, split paths that leave the dataset, missing
// test images, few-shot files that smuggle in test images or wrong labels; CoOp's few-shot export
// form is accepted and its real shot count recorded.
import Foundation
import Testing

@Suite(.serialized) struct InputCheckTests {
    /// A private copy of the synthetic dataset whose split lists `edit` may change.
    func dataset(
        _ name: String, edit: (inout [String: [[Any]]]) -> Void = { _ in }
    ) throws -> (root: String, yaml: String) {
        let root = temporaryDirectory(name) + "/data"
        try FileManager.default.copyItem(atPath: tinyRun.dataRoot, toPath: root)
        let splitPath = root + "/synthetic/split_synthetic.json"
        var splits =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: splitPath)))
            as! [String: [[Any]]]
        edit(&splits)
        try JSONSerialization.data(withJSONObject: splits).write(to: URL(fileURLWithPath: splitPath))
        return (root, root + "/synthetic.yaml")
    }

    func train(_ data: (root: String, yaml: String), extra: [String] = []) throws -> ProcessResult {
        let out = (data.root as NSString).deletingLastPathComponent + "/run"
        return try cavptDist(
            [
                "train", "--dataset", data.yaml, "--method", "vpt_deep", "--data-root", data.root,
                "--model", tinyRun.model, "--output", out, "--set", "train.epochs=1",
                "--set", "train.batchSize=8", "--set", "train.workers=1",
            ] + extra)
    }

    func expectOneError(_ r: ProcessResult, _ needles: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == 1, sourceLocation: sourceLocation)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        #expect(errors.count == 1, "\(r.stderr)", sourceLocation: sourceLocation)
        for needle in needles {
            #expect(errors.first?.contains(needle) == true, "\(needle) in \(r.stderr)", sourceLocation: sourceLocation)
        }
        #expect(!r.stdout.contains("epoch 1/1"), "trained before failing: \(r.stdout)", sourceLocation: sourceLocation)
    }

    @Test func emptyListsAreErrors() throws {
        expectOneError(try train(try dataset("emptytest") { $0["test"] = [] }), ["test split is empty"])
        expectOneError(try train(try dataset("emptytrain") { $0["train"] = [] }), ["is empty: nothing to train on"])
    }

    @Test func aClassWithoutTrainingImagesIsAnError() throws {
        let data = try dataset("noclass") { $0["train"] = $0["train"]!.filter { ($0[1] as! Int) != 2 } }
        expectOneError(try train(data), ["has no image of 1 class(es): 2 'blue sky'"])
    }

    @Test func pathsThatLeaveTheDatasetAreRefusedUnopened() throws {
        // A valid JPEG outside the image folder, reached by ../ and by an absolute path; /etc/passwd.
        let outside = try dataset("outside-relative") { splits in
            splits["test"]![0][0] = "../../outside.jpg"
        }
        try FileManager.default.copyItem(
            atPath: outside.root + "/synthetic/images/red_disc/red_disc_0000.jpg",
            toPath: (outside.root as NSString).deletingLastPathComponent + "/outside.jpg")
        expectOneError(try train(outside), ["outside.jpg", "leaves the dataset's image folder", "test split"])
        expectOneError(
            try train(try dataset("outside-absolute") { $0["train"]![0][0] = "/etc/passwd" }),
            ["/etc/passwd", "must be relative"])
        // A symbolic link inside the folder that leads out of it.
        let linked = try dataset("outside-link")
        let link = linked.root + "/synthetic/images/red_disc/red_disc_0009.jpg" // a test image
        try FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "/etc/passwd")
        expectOneError(try train(linked), ["red_disc_0009.jpg", "leads outside the dataset's image folder"])
    }

    @Test func aMissingTestImageIsFoundBeforeTraining() throws {
        let data = try dataset("missingtest")
        try FileManager.default.removeItem(atPath: data.root + "/synthetic/images/green_field/green_field_0010.jpg")
        expectOneError(try train(data), ["green_field_0010.jpg", "synthetic test split", "No such file"])
        // A folder where an image should be is not a regular file.
        try FileManager.default.createDirectory(
            atPath: data.root + "/synthetic/images/green_field/green_field_0010.jpg",
            withIntermediateDirectories: false)
        expectOneError(try train(data), ["green_field_0010.jpg", "not a regular file"])
    }

    @Test func fewShotFilesMustComeFromTheTrainSplitWithItsLabels() throws {
        let data = try dataset("fewshotfile")
        let splits =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: data.root + "/synthetic/split_synthetic.json")))
            as! [String: [[Any]]]
        let trainEntries = splits["train"]!.map { [$0[0], $0[1]] },
            testEntries = splits["test"]!.map { [$0[0], $0[1]] }
        func write(_ object: Any, _ name: String) throws -> String {
            let path = data.root + "/" + name
            try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
            return path
        }
        let smuggled = try write(
            ["train": Array(trainEntries.prefix(4)) + Array(testEntries.prefix(1)), "val": [] as [[Any]]],
            "smuggled.json")
        expectOneError(
            try train(data, extra: ["--fewshot", smuggled]),
            ["smuggled.json", "train[4]", "is not in the synthetic train split"])
        var relabelled = trainEntries
        relabelled[1][1] = ((relabelled[1][1] as! Int) + 1) % 4
        let wrong = try write(["train": relabelled, "val": [] as [[Any]]], "relabelled.json")
        expectOneError(
            try train(data, extra: ["--fewshot", wrong]), ["relabelled.json", "train[1]", "but the train split says"])
        // CoOp's export form: just the lists, [path, label] (or with class names). Two per class.
        var perClass: [Int: Int] = [:]
        let twoShot = trainEntries.filter { entry in
            let label = entry[1] as! Int
            perClass[label, default: 0] += 1
            return perClass[label]! <= 2
        }
        let coop = try write(["train": twoShot, "val": Array(splits["val"]!.prefix(2))], "coop.json")
        let r = try train(data, extra: ["--fewshot", coop])
        try #require(r.status == 0, "\(r.stderr)")
        let run = (data.root as NSString).deletingLastPathComponent + "/run"
        let recorded = try results(run)
        #expect(recorded["shots"] as? Int == 2)
        #expect(recorded["fewshot"] as? String == coop)
    }

    @Test func anImageFolderWithoutSplitsCannotTrainOnItsTestImages() throws {
        // <root>/<class>/*.jpg and nothing else: every split is the same files.
        let root = temporaryDirectory("flatfolder") + "/images"
        for name in ["red_disc", "blue_sky"] {
            try FileManager.default.copyItem(
                atPath: tinyRun.dataRoot + "/synthetic/images/" + name, toPath: root + "/" + name)
        }
        let r = try cavptDist([
            "train", "--dataset", "imagefolder", "--method", "vpt_deep", "--data-root", root,
            "--model", tinyRun.model, "--output", root + "/../run", "--set", "train.epochs=1",
        ])
        expectOneError(r, ["are also in the imagefolder test split", "meaningless"])
        // Zero-shot evaluation of the same folder is fine.
        let z = try cavptDist(["zeroshot", "--dataset", "imagefolder", "--data-root", root, "--model", tinyRun.model])
        #expect(z.status == 0, "\(z.stderr)")
    }
}
