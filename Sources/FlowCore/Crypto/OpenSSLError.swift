import CFlowsOpenSSL

/// Drains OpenSSL's thread-local error queue into one line, e.g. `error:1C800064:Provider routines::bad decrypt`.
///
/// The queue must be drained after every failure, or a later call on the same thread reports a stale error.
public func drainOpenSSLErrors() -> String {
    var parts: [String] = []
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        parts.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return parts.isEmpty ? "no OpenSSL error recorded" : parts.joined(separator: "; ")
}

/// Clears OpenSSL's error queue without reading it (after an expected failure).
func clearOpenSSLErrors() {
    ERR_clear_error()
}

/// A memory BIO holding `bytes`, freed when the closure returns.
func withMemoryBIO<T>(_ bytes: [UInt8], _ body: (OpaquePointer) throws(KeyError) -> T) throws(KeyError) -> T {
    let bio: OpaquePointer? = bytes.withUnsafeBytes { raw in
        BIO_new_mem_buf(raw.baseAddress, Int32(raw.count))
    }
    guard let bio else { throw KeyError(file: nil, reason: "out of memory") }
    // BIO_new_mem_buf does not copy: keep `bytes` alive while the BIO is in use.
    defer { BIO_free(bio); _ = bytes.count }
    return try body(bio)
}

/// Runs `write` against a fresh memory BIO and returns what it wrote.
func collectBIO(_ write: (OpaquePointer) -> Bool) -> [UInt8]? {
    guard let bio = BIO_new(BIO_s_mem()) else { return nil }
    defer { BIO_free(bio) }
    guard write(bio) else {
        clearOpenSSLErrors()
        return nil
    }
    var pointer: UnsafeMutablePointer<CChar>?
    let length = cflows_bio_get_mem_data(bio, &pointer)
    guard let pointer, length > 0 else { return [] }
    return pointer.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
}
