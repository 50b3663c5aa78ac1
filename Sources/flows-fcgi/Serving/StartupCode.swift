#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Gives back the code pages that only starting up used: `madvise(MADV_DONTNEED)` on every executable file mapping
/// of this process (the binary, libcrypto, SQLite, libc, ...), read from `/proc/self/maps`.
///
/// Starting touches far more code than serving: OpenSSL's configuration, provider and key decoders and the key
/// check, the Flow JSON compiler, the migrations. Those pages stay mapped for the life of the process, and the
/// kernel maps code in 64 KiB chunks around every page a process runs, so they are most of a serving process's
/// resident memory. Dropping the mappings leaves the pages in the page cache (other processes keep theirs) and
/// costs only minor faults: the code a request runs comes back at its first use, the rest stays out. Only
/// executable, private, never-written mappings are dropped (their contents are the file's, so nothing is lost);
/// data, relocated and anonymous memory is never touched.
func releaseStartupCode() {
    guard let maps = fopen("/proc/self/maps", "r") else { return }
    defer { fclose(maps) }
    var line = [CChar](repeating: 0, count: 4096)
    while fgets(&line, Int32(line.count), maps) != nil {
        line.withUnsafeMutableBufferPointer { buffer in
            guard let text = buffer.baseAddress else { return }
            // "start-end perms offset dev inode path": hexadecimal addresses, then four permission letters.
            var cursor: UnsafeMutablePointer<CChar>? = text
            let start = strtoull(text, &cursor, 16)
            guard let dash = cursor, dash.pointee == CChar(UInt8(ascii: "-")) else { return }
            let end = strtoull(dash + 1, &cursor, 16)
            guard let space = cursor, space.pointee == CChar(UInt8(ascii: " ")), end > start,
                memcmp(space + 1, "r-xp ", 5) == 0,
                strchr(space, Int32(UInt8(ascii: "/"))) != nil  // a file, not [vdso] or anonymous memory
            else { return }
            _ = madvise(UnsafeMutableRawPointer(bitPattern: UInt(start)), Int(end - start), MADV_DONTNEED)
        }
    }
}
