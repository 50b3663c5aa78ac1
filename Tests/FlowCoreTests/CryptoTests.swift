import FlowCore
import Testing

@Suite("Interop vector from a real WhatsApp client (pywa)")
struct InteropTests {
    let vector: JSONValue
    let key: PrivateKey

    init() throws {
        vector = try JSONParser.parse(try fixture("pywa-interop.json"))
        key = try PrivateKey.load(pem: Array(vector["private_key_pem"]!.stringValue!.utf8),
                                  passphrase: vector["passphrase"]!.stringValue!, file: "pywa-interop.json")
    }

    @Test func decryptsTheRealClientRequest() throws {
        let envelope = vector["request_envelope"]!
        let request = try FlowCrypto.decrypt(
            Envelope(encryptedFlowData: envelope["encrypted_flow_data"]!.stringValue!,
                     encryptedAESKey: envelope["encrypted_aes_key"]!.stringValue!,
                     initialVector: envelope["initial_vector"]!.stringValue!),
            keys: [key])
        #expect(Hex.encode(request.aesKey) == vector["aes_key_hex"]!.stringValue!)
        #expect(request.json == vector["decrypted_request"]!)
    }

    @Test func sealsTheExactPlaintextToTheGivenAnswer() throws {
        let envelope = vector["request_envelope"]!
        let iv = Base64.decode(envelope["initial_vector"]!.stringValue!)!
        let aesKey = Hex.decode(vector["aes_key_hex"]!.stringValue!)!
        let plaintext = Array(vector["response_plaintext_exact_bytes"]!.stringValue!.utf8)
        let sealed = try FlowCrypto.sealAnswer(plaintext, key: aesKey, requestIV: iv)
        #expect(sealed == vector["response_base64"]!.stringValue!)
        #expect(try FlowCrypto.openAnswer(sealed, key: aesKey, requestIV: iv) == plaintext)
    }

    @Test func verifiesTheWebhookSignature() throws {
        let hook = vector["webhook_signature"]!
        let body = Array(hook["body"]!.stringValue!.utf8)
        let secret = Array(hook["app_secret"]!.stringValue!.utf8)
        #expect(Signature.header(for: body, secret: secret) == hook["x_hub_signature_256"]!.stringValue!)
        try Signature.verify(values: [hook["x_hub_signature_256"]!.stringValue!], body: body, secrets: [secret])
        #expect(throws: Signature.Failure.mismatch) {
            try Signature.verify(values: [hook["x_hub_signature_256"]!.stringValue!], body: body + [0x20],
                                 secrets: [secret])
        }
    }
}

@Suite("Private keys")
struct KeyTests {
    @Test(arguments: [
        ("keys/pkcs1.pem", nil), ("keys/pkcs1-des3.pem", "test-pass"), ("keys/pkcs8.pem", nil),
        ("keys/pkcs8-enc.pem", "test-pass"),
        // An unencrypted key ignores a passphrase.
        ("keys/pkcs8.pem", "unused"),
    ] as [(String, String?)])
    func loadsEveryPEMForm(name: String, passphrase: String?) throws {
        let key = try PrivateKey.load(pem: try fixture(name), passphrase: passphrase, file: name)
        #expect(key.bits == 2048)
        #expect(key.publicKeyPEM.hasPrefix("-----BEGIN PUBLIC KEY-----"))
        // It really is the private half: a round trip through OAEP works.
        let secret: [UInt8] = Array(0..<16)
        #expect(key.oaepDecrypt(key.oaepEncrypt(secret)!) == secret)
    }

    @Test(arguments: ["keys/pkcs1-des3.pem", "keys/pkcs8-enc.pem"])
    func wrongPassphraseNamesTheFile(name: String) throws {
        let error = #expect(throws: KeyError.self) {
            try PrivateKey.load(pem: try fixture(name), passphrase: "not-it", file: name)
        }
        #expect(error?.file == name)
        #expect(error?.reason.contains("passphrase") == true)
        #expect(error?.description.contains("PRIVATE KEY") == false)
    }

    @Test(arguments: ["keys/pkcs1-des3.pem", "keys/pkcs8-enc.pem"])
    func encryptedKeyWithoutPassphrase(name: String) throws {
        let error = #expect(throws: KeyError.self) {
            try PrivateKey.load(pem: try fixture(name), passphrase: nil, file: name)
        }
        #expect(error?.reason.contains("PASSPHRASE") == true)
    }

    @Test func refusesANonRSAKey() throws {
        let error = #expect(throws: KeyError.self) {
            try PrivateKey.load(pem: try fixture("keys/ec.pem"), passphrase: nil, file: "ec.pem")
        }
        #expect(error?.reason.contains("not an RSA key") == true)
    }

    @Test(arguments: [("keys/ec.pem", nil, "an EC key"), ("keys/ec-enc.pem", "test-pass", "an EC key"),
                      ("keys/ec-sec1.pem", nil, "an EC key"), ("keys/ed25519.pem", nil, "a PKCS#8 key of type ED25519")])
    func namesTheTypeOfANonRSAKey(name: String, passphrase: String?, kind: String) throws {
        let error = #expect(throws: KeyError.self) {
            try PrivateKey.load(pem: try fixture(name), passphrase: passphrase, file: name)
        }
        #expect(error?.reason == "not an RSA key (\(kind); WhatsApp Flows needs RSA-2048 or larger)")
    }

    @Test func anEncryptedNonRSAKeyWithTheWrongPassphraseIsAWrongPassphrase() throws {
        let error = #expect(throws: KeyError.self) {
            try PrivateKey.load(pem: try fixture("keys/ec-enc.pem"), passphrase: "not-it", file: "ec-enc.pem")
        }
        #expect(error?.reason.hasPrefix("wrong passphrase") == true)
    }

    @Test(arguments: ["keys/pkcs1.pem", "keys/pkcs8.pem"])
    func findsTheKeyAfterOtherPEMBlocks(name: String) throws {
        // A file holding a public key (or a certificate) first, then the private key, loads as it did with
        // PEM_read_bio_PrivateKey; an EC key before the RSA one is skipped too.
        let combined = TestKeys.pkcs8.publicKeyPEM + (try fixtureText("keys/ec.pem")) + (try fixtureText(name))
        let key = try PrivateKey.load(pem: Array(combined.utf8), passphrase: nil, file: "combined.pem")
        let alone = try PrivateKey.load(pem: try fixture(name), passphrase: nil, file: name)
        #expect(key.publicKeyFingerprint == alone.publicKeyFingerprint)
    }

    @Test func refusesASmallKey() throws {
        let error = #expect(throws: KeyError.self) {
            try PrivateKey.load(pem: try fixture("keys/rsa1024.pem"), passphrase: nil, file: "rsa1024.pem")
        }
        #expect(error?.reason.contains("1024") == true)
    }

    @Test func refusesATruncatedPEM() throws {
        let pem = try fixtureText("keys/pkcs8.pem")
        let truncated = Array(pem.utf8.prefix(pem.utf8.count / 2))
        let error = #expect(throws: KeyError.self) {
            try PrivateKey.load(pem: truncated, passphrase: nil, file: "half.pem")
        }
        #expect(error?.reason.contains("damaged or truncated") == true)
        #expect(error?.description.hasPrefix("private key half.pem:") == true)
    }

    @Test(arguments: [("keys/pkcs8.pem", 400), ("keys/pkcs8.pem", 1000), ("keys/pkcs1.pem", 700),
                      ("keys/pkcs1.pem", 1500)])
    func refusesAKeyWhosePartsDoNotFit(name: String, position: Int) throws {
        // One base64 character changed: OpenSSL still parses the file (the numbers are merely different ones).
        var pem = try fixture(name)
        #expect(pem[position] != UInt8(ascii: "\n"))
        pem[position] = pem[position] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        let error = #expect(throws: KeyError.self) {
            try PrivateKey.load(pem: pem, passphrase: nil, file: "damaged.pem")
        }
        #expect(error?.reason.hasPrefix("damaged RSA key: its parts do not fit together") == true)
    }

    @Test func refusesSomethingThatIsNotPEM() throws {
        #expect(throws: KeyError(file: "x.der", reason: "not a PEM file (no '-----BEGIN' line)")) {
            try PrivateKey.load(pem: [0x30, 0x82, 0x01], passphrase: nil, file: "x.der")
        }
        let publicOnly = Array(TestKeys.pkcs8.publicKeyPEM.utf8)
        #expect(throws: KeyError.self) { try PrivateKey.load(pem: publicOnly, passphrase: nil, file: "pub.pem") }
    }

    @Test func writesPEMThatLoadsBack() throws {
        let key = TestKeys.pkcs1
        for format in [PrivateKey.PEMFormat.pkcs1, .pkcs8] {
            for passphrase in [nil, "roundtrip"] as [String?] {
                let pem = key.privateKeyPEM(format: format, passphrase: passphrase)
                let back = try PrivateKey.load(pem: Array(pem.utf8), passphrase: passphrase, file: "written")
                #expect(back.publicKeyFingerprint == key.publicKeyFingerprint)
            }
        }
        #expect(key.privateKeyPEM(format: .pkcs1, passphrase: "x").contains("DEK-Info: DES-EDE3-CBC"))
        #expect(key.privateKeyPEM(format: .pkcs8, passphrase: "x").contains("BEGIN ENCRYPTED PRIVATE KEY"))
    }
}

@Suite("Encryption edge cases")
struct CipherTests {
    @Test func reversedIVDoesNotOpenOurAnswer() throws {
        let key = Digest.randomBytes(16)
        let iv = Digest.randomBytes(16)
        let answer = try FlowCrypto.sealAnswer(Array(#"{"data":{}}"#.utf8), key: key, requestIV: iv)
        let sealed = Base64.decode(answer)!
        #expect(throws: DecryptionFailure.tagMismatch) { try AESGCM.open(sealed, key: key, iv: iv.reversed()) }
        #expect(throws: DecryptionFailure.tagMismatch) { try AESGCM.open(sealed, key: key, iv: iv) }
        #expect(try AESGCM.open(sealed, key: key, iv: FlowCrypto.invert(iv)) == Array(#"{"data":{}}"#.utf8))
    }

    @Test func base64IsStrict() {
        #expect(Base64.decode("aGVsbG8=") == Array("hello".utf8))
        #expect(Base64.decode("aGVsbG8") == nil)
        #expect(Base64.decode("aGVs bG8=") == nil)
        #expect(Base64.decode("aGVsbG9=") == nil)  // non-zero padding bits
        #expect(Base64.decode("") == [])
        #expect(Base64.encode(Array("hello".utf8)) == "aGVsbG8=")
        #expect(Base64.decodeURLSafe("aGVsbG8") == Array("hello".utf8))
    }

    /// Every length's tail case round-trips, and every one-character change of a valid text either fails or
    /// decodes to bytes that encode back to exactly that text (one encoding per byte string).
    @Test func base64RoundTripsAndIsCanonical() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<40 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let text = Base64.encode(bytes)
            #expect(Base64.decode(text) == bytes)
            #expect(Base64.decodeURLSafe(Base64.encodeURLSafe(bytes)) == bytes)
            let utf8 = Array(text.utf8)
            for position in utf8.indices {
                for replacement in Array("A/+=Qz9g~ \0".utf8) where replacement != utf8[position] {
                    var changed = utf8
                    changed[position] = replacement
                    let mutated = String(decoding: changed, as: UTF8.self)
                    if let decoded = Base64.decode(mutated) {
                        #expect(Base64.encode(decoded) == mutated)
                    }
                }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// What the spy comparison was handed: one entry per call, the number of bytes (it reads all of them).
nonisolated(unsafe) private var spiedComparisons: [Int] = []

@Suite("Constant-time comparison", .serialized)
struct ConstantTimeComparisonTests {
    /// A comparison that records how many bytes it is handed and reads every one of them.
    static let spy: Digest.Comparison = { a, b, count in
        spiedComparisons.append(count)
        guard count > 0, let a, let b else { return 0 }
        var difference: UInt8 = 0
        for index in 0..<count {
            difference |= a.load(fromByteOffset: index, as: UInt8.self) ^ b.load(fromByteOffset: index, as: UInt8.self)
        }
        return Int32(difference)
    }

    @Test func theDefaultComparisonIsOpenSSLsCRYPTOMemcmp() throws {
        // The signature checks (X-Hub-Signature-256, flow_token_signature, the read API token) compare through
        // `Digest.constantTimeEqual`, whose default is this: OpenSSL's comparison that reads every byte.
        let symbol = try #require(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "CRYPTO_memcmp"))
        #expect(unsafeBitCast(Digest.constantTimeComparison, to: UnsafeMutableRawPointer.self) == symbol)
    }

    @Test func equalLengthsAreHandedWholeToTheComparisonEvenWhenTheFirstByteDiffers() {
        // An early-exit `==` would stop at the first byte (and never call the comparison).
        let expected = Digest.hmacSHA256(key: Array("secret".utf8), message: Array("body".utf8))
        var firstDiffers = expected
        firstDiffers[0] ^= 0x01
        var lastDiffers = expected
        lastDiffers[31] ^= 0x80
        spiedComparisons = []
        #expect(!Digest.constantTimeEqual(expected, firstDiffers, compare: Self.spy))
        #expect(!Digest.constantTimeEqual(expected, lastDiffers, compare: Self.spy))
        #expect(Digest.constantTimeEqual(expected, expected, compare: Self.spy))
        #expect(spiedComparisons == [32, 32, 32])
        #expect(!Digest.constantTimeEqual(expected, Array(expected.prefix(31)), compare: Self.spy))
        #expect(spiedComparisons == [32, 32, 32], "different lengths are unequal without comparing")
    }

    @Test func aSignatureWrongInOnlyItsFirstOrLastDigitIsRefused() {
        let body = Array(#"{"x":1}"#.utf8)
        let header = Signature.header(for: body, secret: Array("secret".utf8))
        var first = Array(header.utf8)
        first[7] = first[7] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        var last = Array(header.utf8)
        last[70] = last[70] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        for value in [String(decoding: first, as: UTF8.self), String(decoding: last, as: UTF8.self)] {
            #expect(throws: Signature.Failure.mismatch) {
                try Signature.verify(values: [value], body: body, secrets: [Array("secret".utf8)])
            }
        }
        #expect(throws: Never.self) {
            try Signature.verify(values: [header], body: body, secrets: [Array("secret".utf8)])
        }
    }
}

@Suite("AES-GCM contexts reused by a worker")
struct ReusedCipherContextTests {
    /// One worker's contexts across many requests give exactly what fresh contexts give: other keys and IVs,
    /// another key length in between (the cipher changes), and a failed open (wrong tag) that must not spoil the
    /// next one.
    @Test func reusedContextsMatchFreshOnesAcrossKeysLengthsAndFailures() throws {
        let contexts = AESGCMContexts()
        for round in 0..<40 {
            let key = Digest.randomBytes(round % 7 == 3 ? 32 : 16)
            let iv = Digest.randomBytes(16)
            let plaintext = Array("request \(round) ".utf8) + Digest.randomBytes(round * 3)
            let sealed = try AESGCM.seal(plaintext, key: key, iv: iv, contexts: contexts)
            #expect(sealed == (try AESGCM.seal(plaintext, key: key, iv: iv)), "round \(round)")
            #expect(try AESGCM.open(sealed, key: key, iv: iv, contexts: contexts) == plaintext)
            var damaged = sealed
            damaged[damaged.count - 1] ^= 0x01
            #expect(throws: DecryptionFailure.tagMismatch) {
                try AESGCM.open(damaged, key: key, iv: iv, contexts: contexts)
            }
            #expect(throws: DecryptionFailure.tagMismatch) {
                try AESGCM.open(sealed, key: Digest.randomBytes(key.count), iv: iv, contexts: contexts)
            }
        }
    }
}
