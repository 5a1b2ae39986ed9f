// GGUF v3 reader: maps a file, validates every byte it is going to trust, and exposes metadata and tensor
// views into the mapping (tensor data is never copied).
//
// File layout (all little-endian; qrt, like llama.cpp, has no big-endian support):
//
//   1. magic        4 bytes "GGUF" (47 47 55 46)
//   2. version      u32: 3 (2 has the same layout and is accepted; 0, 1 and >= 4 are rejected; a value
//                   whose low 16 bits are zero is a byte-swapped, i.e. big-endian, file)
//   3. n_tensors    i64
//   4. n_kv         i64
//   5. n_kv key/value pairs, each:
//        key    string (non-empty, unique, printable ASCII, at most 65535 bytes)
//        type   i32 gguf value type (ValueType below)
//        value  scalar:  its binary form (bool: one byte, 0 or 1)
//               ARRAY:   element type i32, count u64, then count elements (arrays of arrays are refused)
//   6. n_tensors tensor infos, each:
//        name   string (1..63 bytes, UTF-8 without NUL, unique; ggml's GGML_MAX_NAME is 64 with the NUL)
//        n_dims u32 (1..4)
//        ne     n_dims x i64, ne[0] the contiguous dimension (= numpy shape reversed); every ne > 0
//        type   i32 ggml type id (looked up in format/types.h; unknown/compute-only ids -> UnsupportedError)
//        offset u64, relative to the data section
//   7. zero padding up to a multiple of `alignment` (counted from the file start), only when n_tensors > 0
//   8. data section: tensors in tensor-info order, each padded to `alignment`
//
//   string = u64 byte length + that many UTF-8 bytes, no NUL terminator (value strings capped at 1 GiB)
//   alignment = metadata "general.alignment" (must be a UINT32 power of two, at most kMaxAlignment), else 32
//
// Reader strictness (llama.cpp's gguf.cpp rules, plus the ones marked "qrt"):
//   - every declared count or length is checked against the bytes left in the file before anything is
//     allocated or read: n_kv x 14 + n_tensors x 33 bytes (the smallest possible records), string lengths,
//     array count x element size; vectors grow only as records are actually parsed
//   - a tensor's offset must equal the running sum of the padded sizes of the tensors before it, so
//     out-of-order, overlapping, misaligned or gapped tensors are all refused; its bytes must lie inside
//     the file (a 4 TiB tensor in a 100-byte file is a FormatError, never an allocation)
//   - ne[0] must be a multiple of the type's block size; element and byte counts must fit in int64
//   - qrt: bools must be 0 or 1; keys must be printable ASCII (the GGUF spec says ASCII; llama.cpp takes
//     any bytes); strings must be valid UTF-8 (the spec says UTF-8; gguf-py cannot decode them either);
//     n_dims 0 and zero-sized dimensions are refused (llama.cpp accepts empty tensors, no writer makes them);
//     alignment is capped at kMaxAlignment and arrays at kMaxArrayElements (2^24; llama.cpp: 2^30)
//   - trailing bytes after the last tensor (or missing padding after it) are accepted, as llama.cpp does
//
// Errors: FormatError (corrupt or inconsistent bytes) and UnsupportedError (valid but unsupported tensor
// type) from errors.h; IoError (mmap.h) when the file cannot be opened or mapped. Messages read
//   "<file>: <section> at byte <offset>: <key or tensor>: <problem>"   (section: header, metadata,
//   tensor info, data; truncations say "truncated <section>").
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "format/types.h"
#include "gguf/mmap.h"

namespace qrt::gguf {

constexpr uint32_t kVersion = 3;
constexpr uint32_t kDefaultAlignment = 32;
constexpr uint32_t kMaxAlignment = 1u << 24;      // 16 MiB: room for 2 MiB huge pages, refuses 2^31
constexpr uint64_t kMaxStringBytes = 1ull << 30;  // 1 GiB, as llama.cpp's GGUF_MAX_STRING_LENGTH
constexpr uint64_t kMaxKeyBytes = 65535;          // GGUF spec
// llama.cpp allows 2^30 elements; qrt caps arrays at 2^24 because Python turns each one into a list (up to
// 32 bytes per element): the largest real arrays, tokenizer vocabularies and merges, stay below 2^20.
constexpr uint64_t kMaxArrayElements = 1ull << 24;
constexpr size_t kMaxNameBytes = 63;  // GGML_MAX_NAME - 1
constexpr uint32_t kMaxDims = 4;

// gguf_type: the type of a metadata value.
enum class ValueType : int32_t {
    UINT8 = 0,
    INT8 = 1,
    UINT16 = 2,
    INT16 = 3,
    UINT32 = 4,
    INT32 = 5,
    FLOAT32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    UINT64 = 10,
    INT64 = 11,
    FLOAT64 = 12,
};

// "UINT8" ... "FLOAT64" (gguf-py's GGUFValueType names); "?" for anything else.
const char* value_type_name(ValueType t);

// One metadata value. Scalars are arrays of one element. Element bytes and strings point into the file's
// mapping and stay valid as long as the File that produced them.
struct Value {
    ValueType type = ValueType::UINT8;          // ARRAY for arrays
    ValueType element_type = ValueType::UINT8;  // the element type (== type for scalars)
    uint64_t count = 1;                         // number of elements
    const uint8_t* data = nullptr;          // fixed-size elements: `count` little-endian values, unaligned
    std::vector<std::string_view> strings;  // STRING elements (validated UTF-8)

    bool is_array() const { return type == ValueType::ARRAY; }
    // Element i as T, which must be the element type's C type (uint8_t ... double, bool); throws
    // std::invalid_argument on a type mismatch or a STRING value and std::out_of_range on a bad index.
    template <typename T>
    T at(uint64_t i = 0) const;
    // String element i; throws std::invalid_argument unless element_type is STRING.
    std::string_view str(uint64_t i = 0) const;
};

struct KeyValue {
    std::string key;
    Value value;
    uint64_t offset = 0;  // file offset of the key's record
};

struct TensorInfo {
    std::string name;
    uint32_t n_dims = 0;
    int64_t ne[kMaxDims] = {1, 1, 1, 1};  // ggml order; 1 beyond n_dims
    const TypeTraits* type = nullptr;     // never null once parsed
    uint64_t offset = 0;                  // absolute file offset of the first data byte
    uint64_t nbytes = 0;                  // from tensor_nbytes(): includes NF4's tail
    uint64_t info_offset = 0;             // file offset of this tensor's info record

    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class File {
  public:
    // Maps and parses `path`. Throws IoError, FormatError or UnsupportedError.
    explicit File(const std::string& path);
    // Parses `size` bytes the caller owns (tests, fuzzers); `name` is used in messages. The bytes must
    // outlive the File and every view taken from it.
    static File from_memory(std::string name, const uint8_t* data, uint64_t size);

    const std::string& path() const { return path_; }
    uint64_t file_size() const { return size_; }
    uint32_t version() const { return version_; }
    uint32_t alignment() const { return alignment_; }
    // Where the data section starts: the end of the tensor infos padded to `alignment`, or unpadded when
    // the file has no tensors (llama.cpp's rule; a vocabulary-only file need not end with padding).
    uint64_t data_offset() const { return data_offset_; }

    const std::vector<KeyValue>& metadata() const { return kv_; }        // file order
    const std::vector<TensorInfo>& tensors() const { return tensors_; }  // file order
    const Value* find(std::string_view key) const;                       // nullptr when absent
    const TensorInfo* find_tensor(std::string_view name) const;          // nullptr when absent
    // Pointer to the tensor's bytes inside the mapping (nbytes of them, all inside the file).
    const uint8_t* tensor_data(const TensorInfo& t) const { return data_ + t.offset; }
    // Takes the whole pages within [p, p + n) of the mapping out of this process's resident memory (for
    // tensors copied elsewhere at load); the bytes stay readable and fault back in from the page cache.
    // Nothing happens for borrowed memory (from_memory).
    void evict(const uint8_t* p, uint64_t n) const noexcept {
        if (map_.data() && p >= data_ && n <= size_ && uint64_t(p - data_) <= size_ - n)
            map_.evict(uint64_t(p - data_), n);
    }

  private:
    File() = default;
    void parse();

    friend class Parser;
    MappedFile map_;  // empty when parsing borrowed memory
    std::string path_;
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
    uint32_t version_ = 0;
    uint32_t alignment_ = kDefaultAlignment;
    uint64_t data_offset_ = 0;
    std::vector<KeyValue> kv_;
    std::vector<TensorInfo> tensors_;
    // Keyed by views into the file bytes (stable for the File's life, unlike the strings in kv_).
    std::unordered_map<std::string_view, size_t> kv_index_;
    std::unordered_map<std::string_view, size_t> tensor_index_;
};

}  // namespace qrt::gguf
