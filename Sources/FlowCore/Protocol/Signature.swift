#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `X-Hub-Signature-256` verification: `sha256=` + hex HMAC-SHA256 of the exact raw body, compared in constant
/// time (`Digest.constantTimeEqual`: OpenSSL's `CRYPTO_memcmp`) against every configured app secret (current and
/// previous).
public enum Signature {
    /// The FastCGI/CGI parameter the header arrives as.
    public static let parameterName = "HTTP_X_HUB_SIGNATURE_256"

    /// Why a signature was refused (all answered with 432).
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// No `X-Hub-Signature-256` header.
        case missing
        /// The header was sent more than once.
        case duplicated
        /// Not `sha256=` followed by 64 hex digits.
        case malformed
        /// Well-formed, but no configured secret produces it.
        case mismatch

        /// Plain words for the answer body and the log.
        public var description: String {
            switch self {
            case .missing: return "missing X-Hub-Signature-256 header"
            case .duplicated: return "X-Hub-Signature-256 header sent more than once"
            case .malformed: return "malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)"
            case .mismatch: return "X-Hub-Signature-256 does not match the body"
            }
        }
    }

    /// The header value for `body` under `secret` (what Meta sends).
    public static func header(for body: [UInt8], secret: [UInt8]) -> String {
        "sha256=" + Hex.encode(Digest.hmacSHA256(key: secret, message: body))
    }

    /// Checks the signature parameters of a request against `body`.
    ///
    /// - Parameters:
    ///   - values: every value the request carried for the signature header (more than one is refused).
    ///   - body: the exact raw body bytes.
    ///   - secrets: the accepted app secrets.
    public static func verify(values: [String], body: [UInt8], secrets: [[UInt8]]) throws(Failure) {
        try verify(values: values, body: body, keys: secrets.map { HMACSHA256(key: $0) })
    }

    /// Checks the signature parameters of a request against `body` with the app secrets keyed once per worker
    /// thread (`keys`, current first).
    public static func verify(values: [String], body: [UInt8], keys: [HMACSHA256]) throws(Failure) {
        guard !values.isEmpty else { throw .missing }
        guard values.count == 1 else { throw .duplicated }
        var value = values[0]
        guard !value.isEmpty else { throw .missing }
        // On the bytes: `sha256=` and 64 hex digits.
        let prefix: StaticString = "sha256="
        let decoded = value.withUTF8 { bytes -> [UInt8]? in
            guard bytes.count == 7 + 64, memcmp(bytes.baseAddress!, prefix.utf8Start, 7) == 0 else { return nil }
            return Hex.decode(UnsafeBufferPointer(rebasing: bytes[7...]))
        }
        guard let given = decoded else { throw .malformed }
        var matched = false
        for key in keys {
            // Every secret is checked, so timing does not tell which one matched.
            let expected = key.authenticate(body)
            if Digest.constantTimeEqual(expected, given) { matched = true }
        }
        guard matched else { throw .mismatch }
    }
}

/// Verification of `flow_token_signature` (version 4.0): an HS256 JWT signed with the app secret whose payload
/// carries the request's flow token in its `flow_token` claim.
public enum FlowTokenSignature {
    /// True when `jwt` is a well-formed HS256 JWT, signed with one of `secrets`, whose `flow_token` claim equals
    /// `flowToken`.
    public static func isValid(_ jwt: String, flowToken: String, secrets: [[UInt8]]) -> Bool {
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
            let headerBytes = Base64.decodeURLSafe(parts[0]),
            let payloadBytes = Base64.decodeURLSafe(parts[1]),
            let signature = Base64.decodeURLSafe(parts[2]),
            let header = try? JSONParser.parse(headerBytes),
            header["alg"]?.stringValue == "HS256",
            let payload = try? JSONParser.parse(payloadBytes)
        else { return false }
        let signed = Array(parts[0].utf8) + [UInt8(ascii: ".")] + Array(parts[1].utf8)
        var matched = false
        for secret in secrets where Digest.constantTimeEqual(Digest.hmacSHA256(key: secret, message: signed), signature) {
            matched = true
        }
        guard matched else { return false }
        return payload["flow_token"]?.stringValue == flowToken
    }

    /// Makes such a JWT (for tests and the probe client).
    public static func make(flowToken: String, secret: [UInt8]) -> String {
        let header = Base64.encodeURLSafe(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let payload = Base64.encodeURLSafe(JSONValue.object(["flow_token": .string(flowToken)]).serialized)
        let signed = Array("\(header).\(payload)".utf8)
        return "\(header).\(payload).\(Base64.encodeURLSafe(Digest.hmacSHA256(key: secret, message: signed)))"
    }
}
