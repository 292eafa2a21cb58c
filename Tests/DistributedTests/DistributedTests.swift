import Testing
@testable import Distributed
