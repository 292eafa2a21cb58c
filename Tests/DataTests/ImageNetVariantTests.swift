// The domain-generalisation targets as CoOp reads them: ImageNet-A/-R (200 of ImageNet's classes,
// labelled by the sorted wnid folders present, named from the 1000-line classnames.txt),
// ImageNet-Sketch (the same reader over 1000 folders) and ImageNet-V2 (numbered folders).
import Foundation
import Testing

@testable import Data

@Suite struct ImageNetVariantTests {
    let classnames =
        "n01440764 tench\nn01443537 goldfish\nn01484850 great white shark\nn01491361 tiger shark\nn01494475 "
        + "hammerhead\n"

    @Test func imagenetAKeepsItsSubsetInSortedWnidOrderWithImageNetNames() throws {
        let root = try makeTemporaryFolder("imagenet-a")
        defer { removeTemporaryFolder(root) }
        try writeFile(root + "/imagenet-adversarial/classnames.txt", classnames)
        // Three of the five classes, created out of order; a README beside them as the real set has.
        for (wnid, files) in [("n01494475", ["b.jpg", "a.jpg"]), ("n01443537", ["x.jpg"]), ("n01484850", ["q.JPEG"])] {
            for f in files { try writeFile(root + "/imagenet-adversarial/imagenet-a/\(wnid)/\(f)", "") }
        }
        try writeFile(root + "/imagenet-adversarial/imagenet-a/README.txt", "readme")
        let splits = try loadDataset(spec: try datasetSpec(named: "imagenet_a"), dataRoot: root)
        #expect(splits.classNames == ["goldfish", "great white shark", "hammerhead"])
        #expect(
            splits.test == [
                Sample(path: "n01443537/x.jpg", label: 0), Sample(path: "n01484850/q.JPEG", label: 1),
                Sample(path: "n01494475/a.jpg", label: 2), Sample(path: "n01494475/b.jpg", label: 2),
            ])
        #expect(splits.train == splits.test)
        // A folder with no name in classnames.txt is an error naming it.
        try writeFile(root + "/imagenet-adversarial/imagenet-a/n09999999/z.jpg", "")
        #expect(throws: (any Error).self) {
            _ = try loadDataset(spec: try datasetSpec(named: "imagenet_a"), dataRoot: root)
        }
    }

    @Test func imagenetRAndSketchUseTheSameReader() throws {
        for (name, folder, images) in [
            ("imagenet_r", "imagenet-rendition", "imagenet-r"), ("imagenet_sketch", "imagenet-sketch", "images"),
        ] {
            let root = try makeTemporaryFolder(name)
            defer { removeTemporaryFolder(root) }
            try writeFile(root + "/\(folder)/classnames.txt", classnames)
            try writeFile(root + "/\(folder)/\(images)/n01440764/1.jpg", "")
            try writeFile(root + "/\(folder)/\(images)/n01491361/2.jpg", "")
            let splits = try loadDataset(spec: try datasetSpec(named: name), dataRoot: root)
            #expect(splits.classNames == ["tench", "tiger shark"], "\(name)")
            #expect(splits.test.map(\.label) == [0, 1], "\(name)")
        }
    }

    @Test func imagenetV2FolderNumbersAreTheLabels() throws {
        let root = try makeTemporaryFolder("imagenetv2")
        defer { removeTemporaryFolder(root) }
        try writeFile(root + "/imagenetv2/classnames.txt", classnames)
        let images = root + "/imagenetv2/imagenetv2-matched-frequency-format-val"
        try writeFile(images + "/3/a.jpeg", "")
        try writeFile(images + "/0/b.jpeg", "")
        try writeFile(images + "/0/a.jpeg", "")
        let splits = try loadDataset(spec: try datasetSpec(named: "imagenetv2"), dataRoot: root)
        // All five classes stay (the 1000 of ImageNet), whether or not a folder has images.
        #expect(splits.classNames == ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"])
        #expect(
            splits.test == [
                Sample(path: "0/a.jpeg", label: 0), Sample(path: "0/b.jpeg", label: 0),
                Sample(path: "3/a.jpeg", label: 3),
            ])
    }
}
