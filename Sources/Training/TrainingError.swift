// The errors of a run that are not a configuration value's: one line a user can act on.

public enum TrainingError: Error, CustomStringConvertible {
    case checkpoint(String)
    case configuration(String)
    case diverged(String)
    case input(String)

    public var description: String {
        switch self {
        case .checkpoint(let m), .configuration(let m), .diverged(let m), .input(let m): return m
        }
    }
}
