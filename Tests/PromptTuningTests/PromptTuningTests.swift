import Testing
@testable import PromptTuning
