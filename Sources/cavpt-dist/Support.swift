// What every command shares: one-line errors and a non-zero exit.
import ArgumentParser
import Tensor

/// Runs a command body; any error becomes `error: <one line>` on stderr and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let exit as ExitCode {
        throw exit
    } catch let error as ValidationError {
        throw error
    } catch {
        let line = String(describing: error).split(separator: "\n").joined(separator: " ")
        writeStandardError("error: \(line)\n")
        throw ExitCode(1)
    }
}
