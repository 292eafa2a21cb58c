import Testing

@testable import CLIP
