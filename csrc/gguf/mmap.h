// MappedFile: a whole regular file mapped read-only into memory (RAII; move-only).
//
// Tensor data is never copied: readers hand out pointers into the mapping, and the mapping lives as long
// as its owner. The file descriptor is closed right after mapping (the mapping keeps the pages alive).
//
// Caveat shared with every mmap-based loader (llama.cpp included): if another process truncates the file
// while it is mapped, touching the lost pages raises SIGBUS. Sizes are taken once, at open.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace qrt {

// The file could not be opened, inspected or mapped. `error_number` is the errno of the failing call, so
// the Python binding can raise the matching OSError subclass (FileNotFoundError, PermissionError, ...).
struct IoError : std::runtime_error {
    IoError(int error_number, std::string path, const std::string& reason)
        : std::runtime_error(path + ": " + reason),
          error_number(error_number),
          path(std::move(path)),
          reason(reason) {}
    int error_number;
    std::string path;
    std::string reason;  // what failed, without the path: "cannot open: No such file or directory"
};

class MappedFile {
  public:
    MappedFile() = default;
    // Opens and maps `path`. Throws IoError for a missing/unreadable file, a directory, a FIFO or device
    // (only regular files are mapped: a FIFO would block and a device has no size), or a failed mmap.
    explicit MappedFile(const std::string& path);
    ~MappedFile();
    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&& other) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    // nullptr for an empty file (mmap cannot map 0 bytes).
    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }
    // madvise(MADV_DONTNEED) on the whole pages inside [offset, offset + n): a read-only private file
    // mapping loses nothing, the pages are read again from the page cache on the next access.
    void evict(uint64_t offset, uint64_t n) const noexcept;

  private:
    void release() noexcept;

    std::string path_;
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
};

}  // namespace qrt
