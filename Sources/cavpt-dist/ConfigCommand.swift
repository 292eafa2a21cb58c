// `cavpt-dist config`: the configuration keys (from the schema the parser checks against), and the
// effective configuration of a run's options.
import ArgumentParser
import Foundation
import Training

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract:
            "List every configuration key with its default and meaning, or print the effective configuration of "
            + "train options.",
        discussion: "Without --list, the options are those of `train` and the result is the YAML a run would record.")

    @Flag(help: "List every key, its default and its meaning.") var list = false
    @Flag(help: "With --list: as a Markdown table.") var markdown = false
    @OptionGroup var arguments: RunArguments

    func run() throws {
        try reportingErrors {
            if list {
                print(ConfigSchema.listing(markdown: markdown), terminator: "")
                return
            }
            print(try RunSetup.config(arguments.options).yaml(), terminator: "")
        }
    }
}
