// The README stays true: its key table is the schema's, every command it lists answers --help,
// every `--set key=…` it shows names a real key, and no link leaves the repository.
import Foundation
import Testing

@testable import Training

@Suite struct ReadmeTests {
    let readme = (try? String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)) ?? ""

    @Test func theKeyTableIsTheSchema() {
        #expect(
            readme.contains(ConfigSchema.listing(markdown: true)),
            "regenerate with `cavpt-dist config --list --markdown`")
        for key in ConfigSchema.keys { #expect(!key.meaning.isEmpty, "\(key.name) needs a meaning") }
    }

    @Test func everyListedCommandAnswersHelp() throws {
        let after = readme.components(separatedBy: "\n## Commands").dropFirst().first ?? ""
        let section = after.components(separatedBy: "\n## ").first ?? ""
        let rows = section.split(separator: "\n").filter { $0.hasPrefix("| `") }
        let commands = Set(
            rows.compactMap {
                $0.dropFirst(3).split(separator: " ").first.map { String($0).replacingOccurrences(of: "`", with: "") }
            })
        #expect(
            commands.isSuperset(of: [
                "train", "eval", "predict", "report", "plot", "config", "zeroshot", "features", "gradients",
                "tokenize", "fewshot", "demo", "bench",
            ]), "\(commands.sorted())")
        for command in commands {
            let r = try cavptDist([command, "--help"])
            #expect(r.status == 0 && r.stdout.contains("USAGE: cavpt-dist \(command)"), "\(command): \(r.stderr)")
        }
    }

    @Test func everySetKeyIsAKey() {
        let pattern = try! NSRegularExpression(pattern: "--set ([A-Za-z.]+)=")
        let matches = pattern.matches(in: readme, range: NSRange(readme.startIndex..., in: readme))
        #expect(matches.count > 5)
        for m in matches {
            let key = String(readme[Range(m.range(at: 1), in: readme)!])
            if key == "k" || key == "key" { continue } // placeholders in the synopsis
            #expect(ConfigSchema.key(key) != nil, "README sets unknown key \(key)")
        }
    }

    @Test func nothingPointsOutsideTheRepository() {
        #expect(!readme.contains("../"), "README reaches outside the repository")
        let link = try! NSRegularExpression(pattern: "\\]\\(([^)#]+)(#[^)]*)?\\)")
        for m in link.matches(in: readme, range: NSRange(readme.startIndex..., in: readme)) {
            let target = String(readme[Range(m.range(at: 1), in: readme)!])
            if target.hasPrefix("http") { continue }
            #expect(
                FileManager.default.fileExists(atPath: packageRoot + "/" + target),
                "README links \(target), which is not in the repository")
        }
        let design = (try? String(contentsOfFile: packageRoot + "/docs/DESIGN.md", encoding: .utf8)) ?? ""
        #expect(!design.isEmpty && !design.contains("../shared"))
    }
}
