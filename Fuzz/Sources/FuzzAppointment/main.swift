import FuzzSupport

/// The decrypted request JSON and the appointment flow's data handling (see `fuzzFlow`).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAppointment(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzFlow("appointment", fuzzBytes(start, count), service: Process.service)
    return 0
}

/// What the target sets up once per process.
private enum Process {
    /// The endpoint and its database.
    nonisolated(unsafe) static let service = FuzzService()
}

runLibFuzzer(fuzzAppointment)
