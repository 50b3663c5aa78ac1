import CFlowsOpenSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// libssl, loaded the first time a TLS connection is made (an https `CALLBACK_URL`, `register-key`, `probe`).
///
/// Not linked: a serving process that never makes an https call does not map it, which keeps about 0.25 MiB out
/// of every responder process. The functions used are looked up by name once; a missing library or symbol is an
/// error of the call that needed TLS, with the reason, never a crash.
struct TLSLibrary: @unchecked Sendable {
    typealias ClientMethod = @convention(c) () -> OpaquePointer?
    typealias ContextNew = @convention(c) (OpaquePointer?) -> OpaquePointer?
    typealias ContextFree = @convention(c) (OpaquePointer?) -> Void
    typealias ContextSetVerify = @convention(c) (OpaquePointer?, Int32, OpaquePointer?) -> Void
    typealias ContextDefaultPaths = @convention(c) (OpaquePointer?) -> Int32
    typealias New = @convention(c) (OpaquePointer?) -> OpaquePointer?
    typealias Free = @convention(c) (OpaquePointer?) -> Void
    typealias SetFD = @convention(c) (OpaquePointer?, Int32) -> Int32
    typealias Control = @convention(c) (OpaquePointer?, Int32, Int, UnsafeMutableRawPointer?) -> Int
    typealias SetHost = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Int32
    typealias Step = @convention(c) (OpaquePointer?) -> Int32
    typealias VerifyResult = @convention(c) (OpaquePointer?) -> Int
    typealias Write = @convention(c) (OpaquePointer?, UnsafeRawPointer?, Int32) -> Int32
    typealias Read = @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Int32
    typealias GetError = @convention(c) (OpaquePointer?, Int32) -> Int32

    let clientMethod: ClientMethod
    let contextNew: ContextNew
    let contextFree: ContextFree
    let contextSetVerify: ContextSetVerify
    let contextDefaultPaths: ContextDefaultPaths
    let new: New
    let free: Free
    let setFD: SetFD
    let control: Control
    let setHost: SetHost
    let connect: Step
    let shutdown: Step
    let verifyResult: VerifyResult
    let write: Write
    let read: Read
    let getError: GetError

    /// The library, or why it could not be loaded (looked up once per process).
    static let shared: Result<TLSLibrary, HTTPError> = load()

    /// `SSL_set_tlsext_host_name`, a macro over `SSL_ctrl`.
    func setServerName(_ tls: OpaquePointer, _ host: String) -> Bool {
        host.withCString { name in
            control(tls, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name),
                    UnsafeMutableRawPointer(mutating: name)) == 1
        }
    }

    private static func load() -> Result<TLSLibrary, HTTPError> {
        // The soname libcrypto's own package pairs with (libssl3 on Debian 12).
        guard let handle = dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown reason"
            return .failure(HTTPError("TLS is unavailable: cannot load libssl.so.3 (\(reason)); install libssl3"))
        }
        var missing: [String] = []
        func symbol<T>(_ name: String, as type: T.Type) -> T? {
            guard let address = dlsym(handle, name) else {
                missing.append(name)
                return nil
            }
            return unsafeBitCast(address, to: type)
        }
        let library = TLSLibrary.make(
            symbol("TLS_client_method", as: ClientMethod.self), symbol("SSL_CTX_new", as: ContextNew.self),
            symbol("SSL_CTX_free", as: ContextFree.self), symbol("SSL_CTX_set_verify", as: ContextSetVerify.self),
            symbol("SSL_CTX_set_default_verify_paths", as: ContextDefaultPaths.self),
            symbol("SSL_new", as: New.self), symbol("SSL_free", as: Free.self), symbol("SSL_set_fd", as: SetFD.self),
            symbol("SSL_ctrl", as: Control.self), symbol("SSL_set1_host", as: SetHost.self),
            symbol("SSL_connect", as: Step.self), symbol("SSL_shutdown", as: Step.self),
            symbol("SSL_get_verify_result", as: VerifyResult.self), symbol("SSL_write", as: Write.self),
            symbol("SSL_read", as: Read.self), symbol("SSL_get_error", as: GetError.self))
        guard let library else {
            return .failure(HTTPError("TLS is unavailable: libssl.so.3 lacks \(missing.joined(separator: ", "))"))
        }
        return .success(library)
    }

    private static func make(
        _ clientMethod: ClientMethod?, _ contextNew: ContextNew?, _ contextFree: ContextFree?,
        _ contextSetVerify: ContextSetVerify?, _ contextDefaultPaths: ContextDefaultPaths?, _ new: New?,
        _ free: Free?, _ setFD: SetFD?, _ control: Control?, _ setHost: SetHost?, _ connect: Step?,
        _ shutdown: Step?, _ verifyResult: VerifyResult?, _ write: Write?, _ read: Read?, _ getError: GetError?
    ) -> TLSLibrary? {
        guard let clientMethod, let contextNew, let contextFree, let contextSetVerify, let contextDefaultPaths,
              let new, let free, let setFD, let control, let setHost, let connect, let shutdown, let verifyResult,
              let write, let read, let getError else { return nil }
        return TLSLibrary(clientMethod: clientMethod, contextNew: contextNew, contextFree: contextFree,
                          contextSetVerify: contextSetVerify, contextDefaultPaths: contextDefaultPaths, new: new,
                          free: free, setFD: setFD, control: control, setHost: setHost, connect: connect,
                          shutdown: shutdown, verifyResult: verifyResult, write: write, read: read,
                          getError: getError)
    }
}
