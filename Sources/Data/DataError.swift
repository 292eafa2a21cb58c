// The errors of the data pipeline: each names the file (and the split list that referenced it).

/// A data-pipeline failure, printed as one line a user can act on.
public enum DataError: Error, CustomStringConvertible, Equatable, Sendable {
    /// An image that cannot be read or decoded, on its own (e.g. `JPEG.decode(path:)`).
    case image(file: String, reason: String)
    /// An image that cannot be read or decoded, found through a split list (`train`, `test`, a few-shot file).
    case listedImage(file: String, list: String, reason: String)
    /// A split file (CoOp JSON, FGVC txt, class-name list) that is missing or malformed.
    case splitFile(file: String, reason: String)
    /// A dataset folder layout problem (missing folder, no images).
    case layout(path: String, reason: String)
    /// A dataset YAML that is missing or malformed.
    case datasetConfig(file: String, reason: String)
    /// No `configs/` folder could be found.
    case configsNotFound(reason: String)
    /// A few-shot list file that is missing, malformed or does not fit the dataset.
    case fewShotFile(file: String, reason: String)
    /// A bad argument from the caller (batch size, rank, resolution).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .image(file, reason): "\(file): \(reason)"
        case let .listedImage(file, list, reason): "\(file) (listed in \(list)): \(reason)"
        case let .splitFile(file, reason): "split file \(file): \(reason)"
        case let .layout(path, reason): "\(path): \(reason)"
        case let .datasetConfig(file, reason): "dataset config \(file): \(reason)"
        case let .configsNotFound(reason): "cannot find the configs folder: \(reason)"
        case let .fewShotFile(file, reason): "few-shot file \(file): \(reason)"
        case let .invalidArgument(message): message
        }
    }

    /// The same failure, attributed to the split list that referenced the image.
    func listed(in list: String) -> DataError {
        if case let .image(file, reason) = self { return .listedImage(file: file, list: list, reason: reason) }
        return self
    }
}
