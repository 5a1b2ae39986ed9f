// POSIX implementation of MappedFile: open (non-blocking, so a FIFO cannot hang us), fstat, mmap, close.
#include "gguf/mmap.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

namespace qrt {

namespace {

[[noreturn]] void throw_io(int err, const std::string& path, const char* what) {
    throw IoError(err, path, std::string(what) + ": " + std::strerror(err));
}

// Closes the descriptor on every exit path of the constructor.
struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
    // open() would silently use the path cut at the first NUL.
    if (path.find('\0') != std::string::npos) throw IoError(EINVAL, path, "path contains a NUL byte");
    Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
    if (f.fd < 0) throw_io(errno, path, "cannot open");
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) throw_io(errno, path, "cannot stat");
    if (S_ISDIR(st.st_mode)) throw_io(EISDIR, path, "cannot map");
    if (!S_ISREG(st.st_mode)) throw IoError(EINVAL, path, "not a regular file, cannot map it");
    if (st.st_size < 0 || uint64_t(st.st_size) > std::numeric_limits<size_t>::max())
        throw_io(EFBIG, path, "cannot map");
    size_ = uint64_t(st.st_size);
    if (size_ == 0) return;  // nothing to map; the reader reports the truncated header
    void* p = ::mmap(nullptr, size_t(size_), PROT_READ, MAP_PRIVATE, f.fd, 0);
    if (p == MAP_FAILED) throw_io(errno, path, "cannot mmap");
    data_ = static_cast<const uint8_t*>(p);
}

MappedFile::~MappedFile() {
    release();
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
    if (this != &other) {
        release();
        path_ = std::move(other.path_);
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

void MappedFile::release() noexcept {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_t(size_));
    data_ = nullptr;
    size_ = 0;
}

void MappedFile::evict(uint64_t offset, uint64_t n) const noexcept {
    const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
    const uint64_t begin = (offset + page - 1) / page * page, end = (offset + n) / page * page;
    if (data_ && end > begin && end <= size_)
        ::madvise(const_cast<uint8_t*>(data_) + begin, size_t(end - begin), MADV_DONTNEED);
}

}  // namespace qrt
