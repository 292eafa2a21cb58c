// Dataset definitions and readers: the shipped YAMLs, CoOp / FGVC / ImageNet / image-folder
// layouts built on disk by the tests, and errors that name the file and what is wrong.
import Foundation
import Tensor
import Testing

@testable import Data

/// Writes a CoOp-layout dataset: `<root>/<folder>/<images>/<class>/<n>.jpg` plus the split JSON.
/// Returns the entries written, per split, as (relative path, label, class name).
@discardableResult
func writeCoOpDataset(
    root: String, folder: String, images: String, splitFile: String,
    classes: [String], perClass: [String: Int]
) throws -> [String: [(String, Int, String)]] {
    var splits: [String: [(String, Int, String)]] = ["train": [], "val": [], "test": []]
    var n = 0
    for (label, name) in classes.enumerated() {
        for split in ["train", "val", "test"] {
            for k in 0..<(perClass[split] ?? 0) {
                let relative = "\(name)/\(split)_\(k).jpg"
                n += 1
                let jpeg = try syntheticJPEG(
                    width: 24 + (n * 7) % 40, height: 20 + (n * 11) % 36, seed: n, gray: n % 9 == 0)
                try writeFile(
                    [root, folder, images, relative].filter { !$0.isEmpty }.joined(separator: "/"), bytes: jpeg)
                splits[split, default: []].append((relative, label, name))
            }
        }
    }
    let json = splits.mapValues { $0.map { [$0.0, $0.1, $0.2] as [Any] } }
    let bytes = try JSONSerialization.data(withJSONObject: json)
    try writeFile(root + "/" + folder + "/" + splitFile, bytes: [UInt8](bytes))
    return splits
}

@Suite struct DatasetTests {
    @Test func everyShippedDatasetConfigParses() throws {
        // DESIGN §2 templates and §3.2 K_N for the eight paper datasets.
        let paper: [String: (template: String, topK: Int)] = [
            "eurosat": ("a centered satellite photo of {}.", 5), "caltech101": ("a photo of a {}.", 50),
            "oxford_flowers": ("a photo of a {}, a type of flower.", 5),
            "food101": ("a photo of {}, a type of food.", 5),
            "fgvc_aircraft": ("a photo of a {}, a type of aircraft.", 20), "dtd": ("{} texture.", 5),
            "oxford_pets": ("a photo of a {}, a type of pet.", 0), "stanford_cars": ("a photo of a {}.", 100),
        ]
        let names = [
            "eurosat", "caltech101", "oxford_flowers", "food101", "fgvc_aircraft", "dtd", "oxford_pets",
            "stanford_cars", "sun397", "ucf101", "imagenet", "imagenetv2", "imagenet_sketch", "imagenet_a",
            "imagenet_r", "imagefolder",
        ]
        for name in names {
            let spec = try datasetSpec(named: name)
            #expect(spec.name == name)
            #expect(spec.topK != nil)
            if let expected = paper[name] {
                #expect(spec.template == expected.template, "\(name)")
                #expect(spec.topK == expected.topK, "\(name)")
            }
        }
        let shipped = try FileManager.default.contentsOfDirectory(atPath: packageRoot + "/configs/datasets")
        #expect(Set(shipped) == Set(names.map { $0 + ".yaml" }))
        #expect(try datasetSpec(named: "fgvc_aircraft").layout == .fgvcAircraft)
        #expect(try datasetSpec(named: "imagenet").layout == .imagenet)
        #expect(try datasetSpec(named: "imagefolder").layout == .imageFolder)
        #expect(
            try datasetSpec(named: packageRoot + "/configs/datasets/dtd.yaml").splitFile
                == "split_zhou_DescribableTextures.json")
        let unknown = "\(thrownError { try datasetSpec(named: "mnist") }!)"
        #expect(unknown.contains("unknown dataset 'mnist' (known: caltech101, dtd, eurosat,"), "\(unknown)")
    }

    @Test func coopSplitDatasetLoadsThroughTheUserPath() throws {
        let root = try makeTemporaryFolder("coop")
        defer { removeTemporaryFolder(root) }
        let classes = ["Annual Crop Land", "Herbaceous_Vegetation", "Sea or Lake"]
        let written = try writeCoOpDataset(
            root: root, folder: "eurosat", images: "2750", splitFile: "split_zhou_EuroSAT.json",
            classes: classes, perClass: ["train": 5, "val": 2, "test": 3])
        let splits = try loadDataset(spec: try datasetSpec(named: "eurosat"), dataRoot: root)
        #expect(splits.classNames == ["Annual Crop Land", "Herbaceous Vegetation", "Sea or Lake"])
        #expect(splits.train.count == 15 && splits.val.count == 6 && splits.test.count == 9)
        #expect(splits.train.map(\.path) == written["train"]!.map(\.0))
        #expect(splits.test.map(\.label) == written["test"]!.map(\.1))
        #expect(splits.imageRoot == root + "/eurosat/2750")

        // The images decode through the loader the trainer uses, and equal a direct transform.
        let loader = try BatchLoader.evaluation(
            samples: splits.test, imageRoot: splits.imageRoot, listName: "test",
            batchSize: 4, rank: 0, size: 1, resolution: 16)
        var seen = 0
        while let batch = try loader.next() {
            for (i, position) in batch.positions.enumerated() {
                let direct = Tensor(zeros: [3, 16, 16])
                writeTestImage(
                    try JPEG.decode(path: splits.imagePath(of: splits.test[position])), resolution: 16,
                    into: direct.data)
                #expect(batch.pixels[i].scalars == direct.scalars)
                #expect(batch.labels[i] == splits.test[position].label)
            }
            seen += batch.labels.count
        }
        #expect(seen == 9)
    }

    @Test func stanfordCarsPathsAreRelativeToTheDatasetFolder() throws {
        let root = try makeTemporaryFolder("cars")
        defer { removeTemporaryFolder(root) }
        try writeCoOpDataset(
            root: root, folder: "stanford_cars", images: "", splitFile: "split_zhou_StanfordCars.json",
            classes: ["2000 AM General Hummer SUV", "2012 Acura RL Sedan"], perClass: ["train": 2, "test": 1])
        let splits = try loadDataset(spec: try datasetSpec(named: "stanford_cars"), dataRoot: root)
        #expect(splits.imageRoot == root + "/stanford_cars")
        #expect(splits.val.isEmpty && splits.train.count == 4)
        #expect(FileManager.default.fileExists(atPath: splits.imagePath(of: splits.train[0])))
    }

    @Test func fgvcAircraftListsGiveLabelsByVariantOrder() throws {
        let root = try makeTemporaryFolder("fgvc")
        defer { removeTemporaryFolder(root) }
        let folder = root + "/fgvc_aircraft"
        try writeFile(folder + "/variants.txt", "707-320\nA300B4\nFalcon 2000\n")
        try writeFile(folder + "/images_variant_train.txt", "1025794 707-320\n1340192 Falcon 2000\n0056978 A300B4\n")
        try writeFile(folder + "/images_variant_val.txt", "2000001 Falcon 2000\n")
        try writeFile(folder + "/images_variant_test.txt", "3000001 A300B4\n\n")
        try FileManager.default.createDirectory(atPath: folder + "/images", withIntermediateDirectories: true)
        let splits = try loadDataset(spec: try datasetSpec(named: "fgvc_aircraft"), dataRoot: root)
        #expect(splits.classNames == ["707-320", "A300B4", "Falcon 2000"])
        #expect(
            splits.train == [
                Sample(path: "1025794.jpg", label: 0), Sample(path: "1340192.jpg", label: 2),
                Sample(path: "0056978.jpg", label: 1),
            ])
        #expect(splits.val == [Sample(path: "2000001.jpg", label: 2)])
        #expect(splits.test == [Sample(path: "3000001.jpg", label: 1)])
        #expect(splits.imagePath(of: splits.test[0]) == folder + "/images/3000001.jpg")

        try writeFile(folder + "/images_variant_test.txt", "3000001 A300B4\n3000002 Boeing 999\n")
        #expect(
            "\(thrownError { try loadDataset(spec: try datasetSpec(named: "fgvc_aircraft"), dataRoot: root) }!)"
                == "split file \(folder)/images_variant_test.txt: line 2: variant 'Boeing 999' is not in "
                + "\(folder)/variants.txt"
        )
    }

    @Test func imagenetFoldersWithClassNames() throws {
        let root = try makeTemporaryFolder("imagenet")
        defer { removeTemporaryFolder(root) }
        let images = root + "/imagenet/images"
        try writeFile(
            root + "/imagenet/classnames.txt", "n01440764 tench\nn01443537 goldfish\nn01484850 great white shark\n")
        for (split, wnid, file) in [
            ("train", "n01443537", "b.JPEG"), ("train", "n01443537", "a.JPEG"),
            ("train", "n01440764", "c.JPEG"), ("val", "n01440764", "v.JPEG"),
        ] {
            try writeFile("\(images)/\(split)/\(wnid)/\(file)", bytes: try syntheticJPEG(width: 8, height: 8, seed: 1))
        }
        try writeFile(images + "/train/n01443537/notes.txt", "not an image")
        let splits = try loadDataset(spec: try datasetSpec(named: "imagenet"), dataRoot: root)
        #expect(splits.classNames == ["tench", "goldfish"])
        #expect(
            splits.train == [
                Sample(path: "train/n01440764/c.JPEG", label: 0), Sample(path: "train/n01443537/a.JPEG", label: 1),
                Sample(path: "train/n01443537/b.JPEG", label: 1),
            ])
        #expect(splits.test == [Sample(path: "val/n01440764/v.JPEG", label: 0)] && splits.val == splits.test)
    }

    @Test func imageFolderLayouts() throws {
        let root = try makeTemporaryFolder("folder")
        defer { removeTemporaryFolder(root) }
        let jpeg = try syntheticJPEG(width: 8, height: 8, seed: 2)
        for path in [
            "golden_retriever/1.jpg", "golden_retriever/0.JPG", "cat/x.jpeg", "cat/.hidden.jpg", ".cache/y.jpg",
        ] {
            try writeFile(root + "/flat/" + path, bytes: jpeg)
        }
        let spec = try datasetSpec(named: "imagefolder")
        let flat = try loadDataset(spec: spec, dataRoot: root + "/flat")
        #expect(flat.classNames == ["cat", "golden retriever"])
        #expect(
            flat.train == [
                Sample(path: "cat/x.jpeg", label: 0), Sample(path: "golden_retriever/0.JPG", label: 1),
                Sample(path: "golden_retriever/1.jpg", label: 1),
            ])
        #expect(flat.test == flat.train && flat.val == flat.train)

        for path in ["train/dog/1.jpg", "train/cat/2.jpg", "test/dog/3.jpg", "test/cat/4.jpg", "test/cat/5.jpg"] {
            try writeFile(root + "/split/" + path, bytes: jpeg)
        }
        let split = try loadDataset(spec: spec, dataRoot: root + "/split")
        #expect(split.classNames == ["cat", "dog"])
        #expect(split.train == [Sample(path: "train/cat/2.jpg", label: 0), Sample(path: "train/dog/1.jpg", label: 1)])
        #expect(split.test.count == 3 && split.val == split.test)
    }

    @Test func malformedSplitFilesNameTheFileAndTheProblem() throws {
        let root = try makeTemporaryFolder("malformed")
        defer { removeTemporaryFolder(root) }
        try FileManager.default.createDirectory(atPath: root + "/dtd/images", withIntermediateDirectories: true)
        let file = root + "/dtd/split_zhou_DescribableTextures.json"
        let spec = try datasetSpec(named: "dtd")
        let cases: [(json: String, reason: String)] = [
            (#"{"train": [], "test": []}"#, #"missing the "val" list"#),
            (#"{"train": {}, "val": [], "test": []}"#, #""train" is not a list"#),
            (
                #"{"train": [["banded/a.jpg", 0]], "val": [], "test": []}"#,
                #"train[0] is not [relative path, label >= 0, class name]: ["banded/a.jpg",0]"#
            ),
            (
                #"{"train": [["banded/a.jpg", 0, "banded"], ["x.jpg", "1", "dotted"]], "val": [], "test": []}"#,
                #"train[1] is not [relative path, label >= 0, class name]: ["x.jpg","1","dotted"]"#
            ),
            (
                #"{"train": [["a.jpg", -1, "banded"]], "val": [], "test": []}"#,
                #"train[0] is not [relative path, label >= 0, class name]: ["a.jpg",-1,"banded"]"#
            ),
            (
                #"{"train": [["a.jpg", 0, "banded"]], "val": [], "test": [["b.jpg", 0, "dotted"]]}"#,
                "label 0 is 'banded' at train[0] but 'dotted' at test[0]"
            ),
            (
                #"{"train": [["a.jpg", 0, "banded"], ["b.jpg", 2, "dotted"]], "val": [], "test": []}"#,
                "no sample has label 1, so it has no class name (labels must run 0..<3)"
            ),
            (#"{"train": [], "val": [], "test": []}"#, "no samples in any list"),
            (#"[1, 2]"#, "expected an object with train, val and test lists"),
        ]
        for (json, reason) in cases {
            try writeFile(file, json)
            let error = thrownError { try loadDataset(spec: spec, dataRoot: root) }
            let message = "\(error ?? DataError.invalidArgument("no error"))"
            #expect(message == "split file \(file): \(reason)")
        }
        try writeFile(file, "{not json")
        let notJSON = "\(thrownError { try loadDataset(spec: spec, dataRoot: root) }!)"
        #expect(notJSON.hasPrefix("split file \(file): not valid JSON") && !notJSON.contains("\n"))
        try FileManager.default.removeItem(atPath: file)
        #expect("\(thrownError { try loadDataset(spec: spec, dataRoot: root) }!)" == "split file \(file): no such file")
        #expect(
            "\(thrownError { try loadDataset(spec: spec, dataRoot: root + "/nowhere") }!)"
                == "\(root)/nowhere/dtd: no such folder (dataset 'dtd' expects <data-root>/dtd/ with data root "
                + "\(root)/nowhere)"
        )
    }

    @Test func datasetYAMLErrorsNameTheKey() {
        func error(_ yaml: String) -> String { "\(thrownError { try DatasetSpec(yaml: yaml, file: "x.yaml") }!)" }
        let base = "  name: d\n  layout: coop-split\n  folder: d\n  splitFile: s.json\n"
        #expect(
            error("dataset:\n" + base + "  template: \"{}.\"\n  imageDir: x\n")
                == "dataset config x.yaml: unknown key dataset.imageDir (known: classFile, classNames, folder, "
                + "images, layout, name, splitFile, template)"
        )
        #expect(
            error("dataset:\n" + base + "  template: \"a photo.\"\n")
                == "dataset config x.yaml: dataset.template 'a photo.' has no {} for the class name")
        #expect(
            error("dataset:\n  name: d\n  layout: folders\n  folder: d\n  template: \"{}\"\n")
                == "dataset config x.yaml: dataset.layout 'folders' is not one of coop-split, fgvc-aircraft, "
                + "imagenet, wnid-folders, imagenet-v2, image-folder"
        )
        #expect(
            error("dataset:\n" + base + "  template: \"{}\"\ncavpt:\n  topK: -1\n")
                == "dataset config x.yaml: cavpt.topK must be an integer >= 0")
        #expect(
            error("dataset:\n  name: d\n  layout: coop-split\n  folder: d\n  template: \"{}\"\n")
                == "dataset config x.yaml: layout coop-split needs dataset.splitFile")
        #expect(error("train:\n  epochs: 3\n") == "dataset config x.yaml: missing the `dataset:` section")
        #expect(error("dataset: [1, 2\n").hasPrefix("dataset config x.yaml: not valid YAML"))
        // Other top-level sections belong to the trainer's config and pass through.
        #expect(
            thrownError {
                try DatasetSpec(yaml: "dataset:\n" + base + "  template: \"{}\"\ntrain:\n  shots: 4\n", file: "y")
            } == nil)
    }

    @Test func classNameRules() throws {
        let spec = try DatasetSpec(
            yaml: """
                dataset:
                  name: d
                  layout: image-folder
                  folder: ""
                  template: "a photo of a {}."
                  classNames:
                    replaceUnderscores: false
                    rename: {"tv_monitor": "television"}
                """, file: "d.yaml")
        #expect(spec.classNames.apply("tv_monitor") == "television")
        #expect(spec.classNames.apply("pot_plant") == "pot_plant")
        #expect(spec.prompt(for: "television") == "a photo of a television.")
    }

    @Test func configLocatorSearchOrder() throws {
        let root = try makeTemporaryFolder("locate")
        defer { removeTemporaryFolder(root) }
        try FileManager.default.createDirectory(
            atPath: root + "/repo/configs/datasets", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(
            atPath: root + "/repo/.build/release", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(
            atPath: root + "/elsewhere/configs/datasets", withIntermediateDirectories: true)
        // From the executable's folder upwards, before the working directory.
        #expect(
            try ConfigLocator.configsDirectory(
                environment: [:], executable: root + "/repo/.build/release/cavpt-dist",
                currentDirectory: root + "/elsewhere") == root + "/repo/configs")
        // From the working directory when the executable is not inside a checkout.
        #expect(
            try ConfigLocator.configsDirectory(
                environment: [:], executable: "/usr/bin/cavpt-dist",
                currentDirectory: root + "/elsewhere/configs") == root + "/elsewhere/configs")
        // The environment variable wins, and must point at a real configs folder.
        #expect(
            try ConfigLocator.configsDirectory(
                environment: ["CAVPT_DIST_CONFIGS": root + "/elsewhere/configs"],
                executable: root + "/repo/.build/release/cavpt-dist",
                currentDirectory: "/") == root + "/elsewhere/configs")
        let unset = thrownError {
            try ConfigLocator.configsDirectory(
                environment: ["CAVPT_DIST_CONFIGS": root], executable: nil, currentDirectory: "/")
        }
        #expect(
            "\(unset!)"
                == "cannot find the configs folder: CAVPT_DIST_CONFIGS=\(root) has no datasets/ folder")
        let missingError = thrownError {
            try ConfigLocator.configsDirectory(environment: [:], executable: "/usr/bin/x", currentDirectory: "/tmp")
        }
        let missing = "\(missingError!)"
        #expect(
            missing
                == "cannot find the configs folder: no configs/datasets above /usr/bin or /tmp; set "
                + "CAVPT_DIST_CONFIGS to the configs folder"
        )
        // And the real one, from the test executable inside this checkout.
        #expect(try ConfigLocator.configsDirectory() == packageRoot + "/configs")
    }
}
