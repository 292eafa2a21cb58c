// `cavpt-dist tokenize`: CLIP token ids for texts, one line of 77 space-separated ids per text.
import ArgumentParser
import CLIP

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the CLIP token ids of each TEXT (SOT, ids, EOT, zero padding to 77), one line per text.",
        discussion: """
            The vocabulary is --vocab, else $CAVPT_DIST_VOCAB, else bpe_simple_vocab_16e6.txt.gz next to the \
            executable, else the copy in the repository (Sources/CLIP/Resources/). --vocab takes the .gz file, \
            a Hugging Face vocab.json (with merges.txt beside it) or a folder holding either.
            """)

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Tokenizer vocabulary: bpe_simple_vocab_16e6.txt.gz, vocab.json, or a folder.",
            valueName: "FILE"))
    var vocab: String?

    @Argument(help: "Texts to tokenize (quote each one).")
    var texts: [String] = []

    func validate() throws {
        if texts.isEmpty { throw ValidationError("give at least one TEXT to tokenize") }
    }

    func run() throws {
        let tokenizer = try CLIPTokenizer(try findVocabulary(modelPath: nil, override: vocab))
        var output = ""
        for text in texts {
            output += tokenizer.tokenize(text).map(String.init).joined(separator: " ")
            output += "\n"
        }
        print(output, terminator: "")
    }
}
