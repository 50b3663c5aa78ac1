import FlowCore
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

@Suite("Configuration")
struct ConfigTests {
    let keys = fixturesDirectory + "/keys"

    func load(_ values: [String: String]) throws(ConfigError) -> Configuration {
        try Configuration(settings: Settings(values), flows: [])
    }

    @Test func refusesToStartWithoutAnAppSecret() {
        let error = #expect(throws: ConfigError.self) { try load(["PRIVATE_KEY_FILE": keys + "/pkcs8.pem"]) }
        #expect(error?.description.contains("APP_SECRET is not set") == true)
    }

    @Test func signatureCheckOffIsExplicit() throws {
        let configuration = try load(["PRIVATE_KEY_FILE": keys + "/pkcs8.pem", "SIGNATURE_CHECK": "off"])
        #expect(configuration.signatureCheck == false)
        #expect(throws: ConfigError.self) { try load(["PRIVATE_KEY_FILE": keys + "/pkcs8.pem", "SIGNATURE_CHECK": "maybe"]) }
    }

    @Test func keyErrorsNameTheFileAndNeverTheKey() throws {
        for (values, expected) in [
            (["PRIVATE_KEY_FILE": keys + "/missing.pem"], "missing.pem: cannot open"),
            (["PRIVATE_KEY_FILE": keys + "/pkcs8-enc.pem", "PASSPHRASE": "wrong"], "pkcs8-enc.pem: wrong passphrase"),
            (["PRIVATE_KEY_FILE": keys + "/ec.pem"], "ec.pem: not an RSA key"),
            ([:], "no private key"),
        ] as [([String: String], String)] {
            var all = values
            all["APP_SECRET"] = "s"
            let error = #expect(throws: ConfigError.self) { try load(all) }
            #expect(error?.description.contains(expected) == true, "\(error?.description ?? "")")
            #expect(error?.description.contains("MII") == false)
        }
    }

    @Test func passphraseFileAndSeveralKeysNewestFirst() throws {
        let dir = temporaryDirectory()
        writeFile(dir + "/pass", "test-pass\n")
        let configuration = try load([
            "APP_SECRET": "s", "PASSPHRASE_FILE": dir + "/pass",
            "PRIVATE_KEY_FILE": "\(keys)/pkcs8-enc.pem, \(keys)/pkcs1-des3.pem,\(keys)/pkcs1.pem",
        ])
        #expect(configuration.keys.map(\.source) == ["\(keys)/pkcs8-enc.pem", "\(keys)/pkcs1-des3.pem", "\(keys)/pkcs1.pem"])
        #expect(throws: ConfigError.self) {
            try load(["APP_SECRET": "s", "PASSPHRASE_FILE": dir + "/pass", "PASSPHRASE": "x",
                      "PRIVATE_KEY_FILE": keys + "/pkcs1.pem"])
        }
    }

    @Test func inlinePrivateKeyWithEscapedNewlines() throws {
        let pem = try fixtureText("keys/pkcs1.pem")
        let oneLine = pem.split(separator: "\n").joined(separator: "\\n")
        let configuration = try load(["APP_SECRET": "s", "PRIVATE_KEY": oneLine])
        #expect(configuration.keys.count == 1)
        #expect(configuration.keys[0].publicKeyFingerprint == TestKeys.pkcs1.publicKeyFingerprint)
    }

    @Test func invalidValuesAreStartupErrors() {
        let base = ["APP_SECRET": "s", "PRIVATE_KEY_FILE": keys + "/pkcs1.pem"]
        for (key, value) in [("DATABASE_URL", "mysql://x"), ("DATABASE_URL", "sqlite:relative.db"),
                             ("LOG_LEVEL", "loud"), ("MAX_BODY_BYTES", "lots"), ("MAX_BODY_BYTES", "1")] {
            var values = base
            values[key] = value
            let error = #expect(throws: ConfigError.self) { try load(values) }
            #expect(error?.description.contains(key) == true)
        }
    }

    /// `DATABASE_URL` names SQLite or PostgreSQL (either scheme); the password file goes with PostgreSQL only.
    @Test func databaseURLNamesTheEngine() throws {
        let base = ["APP_SECRET": "s", "PRIVATE_KEY_FILE": keys + "/pkcs1.pem"]
        for url in ["postgresql://flows@db:5432/flows?sslmode=require", "postgres://flows:pw@[::1]/flows"] {
            var values = base
            values["DATABASE_URL"] = url
            values["DATABASE_PASSWORD_FILE"] = "/etc/flows-fcgi/db-password"
            let configuration = try load(values)
            #expect(configuration.database == .postgres(url: url, passwordFile: "/etc/flows-fcgi/db-password"))
            #expect(configuration.databasePath == nil)
            #expect(configuration.database?.shown.contains("pw") == false)
            // No database file to keep the metrics beside: the operator is told to set METRICS_DIR.
            #expect(configuration.warnings.contains { $0.hasPrefix("METRICS_DIR is not set") })
            values["METRICS_DIR"] = "/var/lib/flows-fcgi/metrics"
            #expect(try load(values).warnings.isEmpty)
        }
        for (url, file) in [("postgresql://db/flows", "relative/password"), ("sqlite:/var/lib/f.db", "/etc/pw")] {
            var values = base
            values["DATABASE_URL"] = url
            values["DATABASE_PASSWORD_FILE"] = file
            let error = #expect(throws: ConfigError.self) { try load(values) }
            #expect(error?.description.contains("DATABASE_PASSWORD_FILE") == true)
        }
    }

    @Test func configFileLikeSystemdEnvironmentFile() throws {
        let dir = temporaryDirectory()
        let pem = try fixtureText("keys/pkcs1.pem")
        writeFile(dir + "/flows.env", """
            # flows-fcgi settings
            export APP_SECRET="from-file"
            LOG_LEVEL = warning
            DATABASE_URL='sqlite:/var/lib/flows/flows.db'
            PRIVATE_KEY="\(pem)"
            FAVOURITE_COLOUR=blue

            """)
        let settings = try Settings(environment: ["LOG_LEVEL": "debug", "UNRELATED": "x"], file: dir + "/flows.env",
                                    names: Configuration.allSettingNames)
        let configuration = try Configuration(settings: settings, flows: [])
        #expect(configuration.appSecrets == [Array("from-file".utf8)])
        #expect(configuration.logLevel == .debug)  // the environment wins
        #expect(configuration.databasePath == "/var/lib/flows/flows.db")
        #expect(configuration.keys.count == 1)
        #expect(configuration.warnings.count == 1)
        #expect(configuration.warnings.first?.contains("FAVOURITE_COLOUR") == true)

        writeFile(dir + "/bad.env", "APP_SECRET\n")
        let error = #expect(throws: ConfigError.self) {
            try Settings(environment: [:], file: dir + "/bad.env", names: [])
        }
        #expect(error?.description.contains("bad.env line 1") == true)
        #expect(throws: ConfigError.self) { try Settings(environment: [:], file: dir + "/none.env", names: []) }
    }

    @Test func secretSettingsAreNamedButNeverShown() {
        for name in ["APP_SECRET", "APP_SECRET_PREVIOUS", "API_TOKEN", "VERIFY_TOKEN", "PASSPHRASE", "PRIVATE_KEY",
                     "SMTP_PASSWORD", "HMAC_KEY", "some_secret"] {
            #expect(Settings.isSecret(name), "\(name)")
            #expect(Settings.shown(name, "hunter2") == "\(name) (value not shown)")
        }
        for name in ["PRIVATE_KEY_FILE", "PASSPHRASE_FILE", "LOG_LEVEL", "DATABASE_URL", "CALLBACK_URL"] {
            #expect(!Settings.isSecret(name), "\(name)")
        }
        #expect(Settings.shown("LOG_LEVEL", "loud") == "LOG_LEVEL=loud")
    }

    @Test func urlPasswordsAndSecretQueryValuesAreHidden() {
        for (url, shown) in [
            ("postgres://user:hunter2@host/db", "postgres://user:<hidden>@host/db"),
            ("https://hunter2@host:8443/x", "https://<hidden>@host:8443/x"),
            ("https://host/x?token=hunter2&flow=a#top", "https://host/x?token=<hidden>&flow=a#top"),
            ("https://host?api_key=hunter2&Signature=hunter2", "https://host?api_key=<hidden>&Signature=<hidden>"),
            ("https://u:p:hunter2@host", "https://u:<hidden>@host"),
            ("sqlite:/var/lib/flows.db", "sqlite:/var/lib/flows.db"),
            ("https://host/path?x=1&y", "https://host/path?x=1&y"),
        ] {
            #expect(Settings.hidingURLSecrets(url) == shown)
            #expect(!Settings.hidingURLSecrets(url).contains("hunter2"))
        }
    }

    @Test func configurationErrorsNeverQuoteASecret() {
        let base = ["PRIVATE_KEY_FILE": keys + "/pkcs8.pem", "APP_SECRET": "s"]
        for (extra, named) in [
            (["DATABASE_URL": "mysql://flows:hunter2@db/flows"], "DATABASE_URL=mysql://flows:<hidden>@db/flows"),
            (["DATABASE_URL": "postgres://flows:hunter2@db/flows", "DATABASE_PASSWORD_FILE": "pw"],
             "DATABASE_PASSWORD_FILE=pw"),
            (["APP_SECRET": "hunter2 x"], "APP_SECRET (value not shown)"),
            (["APP_SECRET_PREVIOUS": "hunter2\t"], "APP_SECRET_PREVIOUS (value not shown)"),
            (["VERIFY_TOKEN": "hunter2\r"], "VERIFY_TOKEN (value not shown)"),
            (["CALLBACK_URL": "https://a:hunter2@hooks/x"], "CALLBACK_URL=https://a:<hidden>@hooks/x"),
            (["CALLBACK_URL": "https://hooks:0/x?token=hunter2"], "CALLBACK_URL=https://hooks:0/x?token=<hidden>"),
        ] as [([String: String], String)] {
            let error = #expect(throws: ConfigError.self) { try load(base.merging(extra) { $1 }) }
            #expect(error?.description.hasPrefix(named) == true, "\(error?.description ?? "")")
            #expect(error?.description.contains("hunter2") == false)
        }
    }

    @Test func aPEMPastedWithoutQuotesIsNotQuotedBack() throws {
        let dir = temporaryDirectory()
        writeFile(dir + "/flows.env", "PRIVATE_KEY=-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN+hunter2/Kw==\n")
        let error = #expect(throws: ConfigError.self) {
            try Settings(environment: [:], file: dir + "/flows.env", names: [])
        }
        #expect(error?.description.contains("flows.env line 2") == true, "\(error?.description ?? "")")
        #expect(error?.description.contains("hunter2") == false)
        // A base64 line that happens to be a valid name: ignored with a warning that does not repeat it.
        writeFile(dir + "/flows.env",
                  "APP_SECRET=s\nPRIVATE_KEY_FILE=\(keys)/pkcs8.pem\nMIIEvQIBhunter2==\nLOG_LEVL=info\n")
        let settings = try Settings(environment: [:], file: dir + "/flows.env", names: [])
        let warnings = try Configuration(settings: settings, flows: []).warnings
        #expect(warnings.count == 2 && warnings.allSatisfy { !$0.contains("hunter2") }, "\(warnings)")
        #expect(warnings.contains { $0.contains("unknown setting LOG_LEVL") })
    }

    @Test func callbackTargetQuotesItsURLWithoutTheToken() throws {
        let target = try CallbackTarget(url: "https://hooks.example/done?token=hunter2")
        #expect(target.url == "https://hooks.example/done?token=<hidden>")
        #expect(target.path == "/done?token=hunter2")
    }
}

@Suite("FLOWS_DIR")
struct FlowsDirectoryTests {
    @Test func theSettingWinsAndMustBeAFolder() throws {
        let folder = temporaryDirectory()
        #expect(try Configuration.flowsDirectory(Settings(["FLOWS_DIR": folder])) == folder)
        writeFile(folder + "/file", "x")
        #expect(throws: ConfigError(setting: "FLOWS_DIR", value: folder + "/file", "not a folder")) {
            try Configuration.flowsDirectory(Settings(["FLOWS_DIR": folder + "/file"]))
        }
    }

    @Test func anInstalledBinaryFindsTheSharedFolder() throws {
        let root = temporaryDirectory()
        for folder in ["/bin", "/share", "/share/flows-fcgi", "/share/flows-fcgi/flows"] { mkdir(root + folder, 0o755) }
        writeFile(root + "/bin/flows-fcgi", "")
        #expect(try Configuration.flowsDirectory(Settings([:]), executable: root + "/bin/flows-fcgi")
            == root + "/share/flows-fcgi/flows")
    }

    @Test func aBuiltBinaryFindsItsSourceTreesFlows() throws {
        // Two folders below the one holding Package.swift and flows/, as .build/release/flows-fcgi is.
        let binary = repositoryRoot + "/Sources/FlowCore/Endpoint.swift"
        #expect(try Configuration.flowsDirectory(Settings([:]), executable: binary) == repositoryRoot + "/flows")
        // Elsewhere, with nothing configured, the error says what to set.
        let stray = temporaryDirectory()
        writeFile(stray + "/flows-fcgi", "")
        let error = #expect(throws: ConfigError.self) {
            try Configuration.flowsDirectory(Settings([:]), executable: stray + "/flows-fcgi")
        }
        #expect(error?.description.hasSuffix("set FLOWS_DIR to the folder of the Flow JSON files") == true)
    }
}
