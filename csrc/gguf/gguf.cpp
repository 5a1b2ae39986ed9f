// GGUF reader. One Parser walks the bytes front to back with a cursor; every read checks the bytes left,
// every declared size is checked against the file before it is used, and every failure names the file,
// the section, the byte offset and the key or tensor (see gguf.h for the layout and the rules).
#include "gguf/gguf.h"

#include <bit>
#include <cstring>
#include <limits>
#include <type_traits>

#include "errors.h"

namespace qrt::gguf {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

namespace {

constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;  // key length, 1-byte key, type, u8 value
constexpr uint64_t kMinTensorInfoBytes =
    8 + 1 + 4 + 8 + 4 + 8;  // name length, 1-byte name, n_dims, ne, type, offset

// Bytes of one element of a fixed-size value type; 8 for STRING (its smallest encoding, the length).
uint64_t element_min_bytes(ValueType t) {
    switch (t) {
        case ValueType::UINT8:
        case ValueType::INT8:
        case ValueType::BOOL:
            return 1;
        case ValueType::UINT16:
        case ValueType::INT16:
            return 2;
        case ValueType::UINT32:
        case ValueType::INT32:
        case ValueType::FLOAT32:
            return 4;
        case ValueType::UINT64:
        case ValueType::INT64:
        case ValueType::FLOAT64:
        case ValueType::STRING:
            return 8;
        case ValueType::ARRAY:
            break;
    }
    return 0;
}

bool is_value_type(int32_t t) {
    return t >= 0 && t <= int32_t(ValueType::FLOAT64);
}

// ggml's names for the type ids qrt's registry may lack, so an UnsupportedError can name the type.
const char* ggml_type_name(int32_t id) {
    static const char* const kNames[] = {"F32",
                                         "F16",
                                         "Q4_0",
                                         "Q4_1",
                                         "Q4_2 (removed from ggml)",
                                         "Q4_3 (removed from ggml)",
                                         "Q5_0",
                                         "Q5_1",
                                         "Q8_0",
                                         "Q8_1",
                                         "Q2_K",
                                         "Q3_K",
                                         "Q4_K",
                                         "Q5_K",
                                         "Q6_K",
                                         "Q8_K",
                                         "IQ2_XXS",
                                         "IQ2_XS",
                                         "IQ3_XXS",
                                         "IQ1_S",
                                         "IQ4_NL",
                                         "IQ3_S",
                                         "IQ2_S",
                                         "IQ4_XS",
                                         "I8",
                                         "I16",
                                         "I32",
                                         "I64",
                                         "F64",
                                         "IQ1_M",
                                         "BF16",
                                         "Q4_0_4_4 (removed from GGUF files)",
                                         "Q4_0_4_8 (removed from GGUF files)",
                                         "Q4_0_8_8 (removed from GGUF files)",
                                         "TQ1_0",
                                         "TQ2_0",
                                         "IQ4_NL_4_4 (removed)",
                                         "IQ4_NL_4_8 (removed)",
                                         "IQ4_NL_8_8 (removed)",
                                         "MXFP4",
                                         "NVFP4",
                                         "Q1_0",
                                         "Q2_0"};
    if (id >= 0 && size_t(id) < std::size(kNames)) return kNames[id];
    return "not a ggml type";
}

// Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF), as Python's decoder.
bool valid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const uint8_t c = uint8_t(s[i]);
        size_t n = 0;
        uint32_t cp = 0, min = 0;
        if (c < 0x80) {
            ++i;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
            min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
            min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else
            return false;
        if (s.size() - i <= n) return false;
        for (size_t k = 1; k <= n; ++k) {
            const uint8_t cc = uint8_t(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += n + 1;
    }
    return true;
}

bool printable_utf8(std::string_view s) {  // no control bytes (s is valid UTF-8)
    for (char c : s)
        if (uint8_t(c) < 0x20 || uint8_t(c) == 0x7F) return false;
    return true;
}

bool printable_ascii(std::string_view s) {
    for (char c : s)
        if (uint8_t(c) < 0x20 || uint8_t(c) > 0x7E) return false;
    return true;
}

// A name or key as it may appear in a message: one line, clipped, valid UTF-8 (it becomes a Python str).
// Control bytes are escaped, and so is every non-ASCII byte unless the string is valid UTF-8.
std::string quoted(std::string_view s) {
    constexpr size_t kClip = 80;
    const bool clip = s.size() > kClip;
    if (clip) {
        size_t n = kClip;
        while (n > 0 && (uint8_t(s[n]) & 0xC0) == 0x80) --n;  // don't cut a UTF-8 sequence
        s = s.substr(0, n);
    }
    const bool utf8 = valid_utf8(s);
    std::string out = "'";
    for (char c : s) {
        const uint8_t b = uint8_t(c);
        if ((b >= 0x20 && b < 0x7F) || (b >= 0x80 && utf8)) {
            out += c;
        } else {
            static const char* hex = "0123456789abcdef";
            out += "\\x";
            out += hex[b >> 4];
            out += hex[b & 15];
        }
    }
    return out + (clip ? "...'" : "'");
}

uint64_t align_up(uint64_t x, uint64_t alignment) {  // callers keep x + alignment far below 2^64
    return (x + alignment - 1) / alignment * alignment;
}

}  // namespace

const char* value_type_name(ValueType t) {
    static const char* const kNames[] = {"UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",  "FLOAT32",
                                         "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64"};
    return is_value_type(int32_t(t)) ? kNames[int32_t(t)] : "?";
}

// ---- Value accessors ----

namespace {
// The value type whose elements are T (ARRAY for a T that is none).
template <typename T>
constexpr ValueType kTypeOf = ValueType::ARRAY;
template <>
constexpr ValueType kTypeOf<uint8_t> = ValueType::UINT8;
template <>
constexpr ValueType kTypeOf<int8_t> = ValueType::INT8;
template <>
constexpr ValueType kTypeOf<uint16_t> = ValueType::UINT16;
template <>
constexpr ValueType kTypeOf<int16_t> = ValueType::INT16;
template <>
constexpr ValueType kTypeOf<uint32_t> = ValueType::UINT32;
template <>
constexpr ValueType kTypeOf<int32_t> = ValueType::INT32;
template <>
constexpr ValueType kTypeOf<float> = ValueType::FLOAT32;
template <>
constexpr ValueType kTypeOf<bool> = ValueType::BOOL;
template <>
constexpr ValueType kTypeOf<uint64_t> = ValueType::UINT64;
template <>
constexpr ValueType kTypeOf<int64_t> = ValueType::INT64;
template <>
constexpr ValueType kTypeOf<double> = ValueType::FLOAT64;
}  // namespace

template <typename T>
T Value::at(uint64_t i) const {
    if (element_type != kTypeOf<T>)
        throw std::invalid_argument(std::string("GGUF value is ") + value_type_name(element_type) + ", not " +
                                    value_type_name(kTypeOf<T>));
    if (i >= count) throw std::out_of_range("GGUF array index out of range");
    if constexpr (std::is_same_v<T, bool>) {
        return data[i] != 0;
    } else {
        T v;
        std::memcpy(&v, data + i * sizeof(T), sizeof(T));
        return v;
    }
}

template uint8_t Value::at<uint8_t>(uint64_t) const;
template int8_t Value::at<int8_t>(uint64_t) const;
template uint16_t Value::at<uint16_t>(uint64_t) const;
template int16_t Value::at<int16_t>(uint64_t) const;
template uint32_t Value::at<uint32_t>(uint64_t) const;
template int32_t Value::at<int32_t>(uint64_t) const;
template float Value::at<float>(uint64_t) const;
template bool Value::at<bool>(uint64_t) const;
template uint64_t Value::at<uint64_t>(uint64_t) const;
template int64_t Value::at<int64_t>(uint64_t) const;
template double Value::at<double>(uint64_t) const;

std::string_view Value::str(uint64_t i) const {
    if (element_type != ValueType::STRING)
        throw std::invalid_argument(std::string("GGUF value is ") + value_type_name(element_type) +
                                    ", not STRING");
    if (i >= strings.size()) throw std::out_of_range("GGUF array index out of range");
    return strings[i];
}

// ---- Parser: a cursor over the file's bytes that checks what is left before every read ----

class Parser {
  public:
    explicit Parser(File& f) : f_(f) {}
    void run();

  private:
    // `subject` is what the current record is ("key 'x'", "tensor #3"); set before reading it.
    [[noreturn]] void fail(uint64_t at, const std::string& problem) const {
        throw FormatError(f_.path_ + ": " + section_ + " at byte " + std::to_string(at) + ": " + subject_ +
                          ": " + problem);
    }
    [[noreturn]] void unsupported(uint64_t at, const std::string& problem) const {
        throw UnsupportedError(f_.path_ + ": " + section_ + " at byte " + std::to_string(at) + ": " +
                               subject_ + ": " + problem);
    }
    uint64_t left() const { return f_.size_ - pos_; }
    void need(uint64_t n, const char* what) const {
        if (n > left())
            throw FormatError(f_.path_ + ": truncated " + section_ + " at byte " + std::to_string(pos_) +
                              ": " + subject_ + ": " + what + " needs " + std::to_string(n) +
                              " bytes, only " + std::to_string(left()) + " left in the file");
    }
    template <typename T>
    T read(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, f_.data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string_view read_string(const char* what, uint64_t max_bytes);
    void check_count(uint64_t n, uint64_t min_bytes, const char* subject, const char* what);

    void header();
    void key_value(int64_t index);
    void read_value(Value& v, ValueType type);
    void alignment();
    void tensor_info(int64_t index);
    void data_section();

    File& f_;
    uint64_t pos_ = 0;
    std::string section_ = "header";
    std::string subject_ = "magic";
    int64_t n_tensors_ = 0, n_kv_ = 0;
    uint64_t next_offset_ = 0;         // where the next tensor must start, relative to the data section
    std::vector<uint64_t> offset_at_;  // file offset of each tensor's offset field, for messages
};

std::string_view Parser::read_string(const char* what, uint64_t max_bytes) {
    const uint64_t at = pos_;
    const uint64_t n = read<uint64_t>(what);
    if (n > max_bytes)
        fail(at, std::string(what) + " length " + std::to_string(n) + " exceeds the limit of " +
                     std::to_string(max_bytes) + " bytes");
    need(n, what);
    std::string_view s(reinterpret_cast<const char*>(f_.data_ + pos_), size_t(n));
    pos_ += n;
    return s;
}

void Parser::header() {
    static constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
    const uint64_t have = std::min<uint64_t>(f_.size_, 4);
    if (std::memcmp(f_.data_ ? (const char*)f_.data_ : "", kMagic, size_t(have)) != 0) {
        std::string m(reinterpret_cast<const char*>(f_.data_), size_t(have));
        std::string hint;
        if (m == "FUGG") hint = " (byte-swapped magic)";
        if (f_.size_ >= 10 && f_.data_[8] == '{' && f_.data_[9] == '"')
            hint = " (looks like a safetensors file)";
        fail(0, "not a GGUF file: magic " + quoted(m) + " instead of 'GGUF'" + hint);
    }
    need(4 + 4 + 8 + 8, "the 24-byte header");
    pos_ = 4;
    subject_ = "version";
    const uint32_t version = read<uint32_t>("version");
    if (version != 0 && (version & 0xFFFF) == 0)
        fail(4, "version " + std::to_string(version) +
                    " looks byte-swapped (wrong endianness): big-endian GGUF files are not supported");
    if (version == 0 || version == 1)
        fail(4, "GGUF version " + std::to_string(version) + " is not supported (only 2 and 3 are)");
    if (version > kVersion)
        fail(4, "GGUF version " + std::to_string(version) + " is newer than the supported version 3");
    f_.version_ = version;

    subject_ = "n_tensors";
    n_tensors_ = read<int64_t>("n_tensors");
    subject_ = "n_kv";
    n_kv_ = read<int64_t>("n_kv");
    if (n_tensors_ < 0) {
        subject_ = "n_tensors";
        fail(8, "negative count " + std::to_string(n_tensors_));
    }
    if (n_kv_ < 0) fail(16, "negative count " + std::to_string(n_kv_));
    // The smallest records still need this many bytes: refuse absurd counts before allocating anything.
    // (n_tensors is checked the same way once the metadata has been read and the bytes left are known.)
    section_ = "metadata";
    check_count(uint64_t(n_kv_), kMinKvBytes, "n_kv (header byte 16)", "key/value pairs");
}

void Parser::check_count(uint64_t n, uint64_t min_bytes, const char* subject, const char* what) {
    if (n <= left() / min_bytes) return;
    throw FormatError(f_.path_ + ": truncated " + section_ + " at byte " + std::to_string(pos_) + ": " +
                      subject + ": " + std::to_string(n) + " " + what + " need at least " +
                      std::to_string(min_bytes) + " bytes each, only " + std::to_string(left()) +
                      " bytes left in the file (count too large or file truncated)");
}

void Parser::read_value(Value& v, ValueType type) {
    const uint64_t at = pos_;
    if (type == ValueType::STRING) {
        const std::string_view s = read_string("string", kMaxStringBytes);
        if (!valid_utf8(s)) fail(at, "string is not valid UTF-8");
        v.strings.push_back(s);
        return;
    }
    const uint64_t n = element_min_bytes(type);
    need(n, value_type_name(type));
    if (type == ValueType::BOOL && f_.data_[pos_] > 1)
        fail(at, "bool stored as " + std::to_string(f_.data_[pos_]) + ", must be 0 or 1");
    pos_ += n;
}

void Parser::key_value(int64_t index) {
    const uint64_t at = pos_;
    subject_ = "key #" + std::to_string(index);
    const std::string_view key = read_string("key", kMaxKeyBytes);
    if (key.empty()) fail(at, "empty key");
    if (!printable_ascii(key)) fail(at, "key " + quoted(key) + " is not printable ASCII");
    subject_ = "key " + quoted(key);
    if (f_.kv_index_.count(key)) fail(at, "duplicate key");

    KeyValue kv{std::string(key), Value{}, at};
    Value& v = kv.value;
    const uint64_t type_at = pos_;
    const int32_t type = read<int32_t>("value type");
    if (!is_value_type(type)) fail(type_at, "unknown value type " + std::to_string(type));
    v.type = v.element_type = ValueType(type);
    if (v.type == ValueType::ARRAY) {
        const int32_t elem = read<int32_t>("array element type");
        if (elem == int32_t(ValueType::ARRAY)) fail(type_at, "arrays of arrays are not allowed");
        if (!is_value_type(elem)) fail(type_at, "unknown array element type " + std::to_string(elem));
        v.element_type = ValueType(elem);
        v.count = read<uint64_t>("array count");
        const uint64_t each = element_min_bytes(v.element_type);
        if (v.count > kMaxArrayElements)
            fail(type_at, "array count " + std::to_string(v.count) + " exceeds the limit of " +
                              std::to_string(kMaxArrayElements));
        if (v.count > left() / each)
            need(v.count * each, "array");  // throws: the elements cannot fit in what is left
    }
    v.data = f_.data_ + pos_;
    for (uint64_t i = 0; i < v.count; ++i) read_value(v, v.element_type);
    f_.kv_index_.emplace(key, f_.kv_.size());  // the view points into the file's bytes, which never move
    f_.kv_.push_back(std::move(kv));
}

void Parser::alignment() {
    const auto it = f_.kv_index_.find("general.alignment");
    if (it == f_.kv_index_.end()) return;
    const KeyValue& kv = f_.kv_[it->second];
    subject_ = "key 'general.alignment'";
    if (kv.value.type != ValueType::UINT32)
        fail(kv.offset, std::string("must be UINT32, is ") + value_type_name(kv.value.type));
    const uint32_t a = kv.value.at<uint32_t>();
    if (a == 0 || (a & (a - 1)) != 0)
        fail(kv.offset, "alignment " + std::to_string(a) + " is not a power of two");
    if (a > kMaxAlignment)
        fail(kv.offset,
             "alignment " + std::to_string(a) + " exceeds the limit of " + std::to_string(kMaxAlignment));
    f_.alignment_ = a;
}

void Parser::tensor_info(int64_t index) {
    TensorInfo t;
    t.info_offset = pos_;
    subject_ = "tensor #" + std::to_string(index);
    const std::string_view name = read_string("tensor name", kMaxNameBytes);
    if (name.empty()) fail(t.info_offset, "empty tensor name");
    if (!valid_utf8(name) || name.find('\0') != std::string_view::npos)
        fail(t.info_offset, "tensor name " + quoted(name) + " is not UTF-8 without NUL");
    subject_ = "tensor " + quoted(name);
    if (f_.tensor_index_.count(name)) fail(t.info_offset, "duplicate tensor name");
    t.name = std::string(name);

    const uint64_t dims_at = pos_;
    t.n_dims = read<uint32_t>("n_dims");
    if (t.n_dims == 0 || t.n_dims > kMaxDims)
        fail(dims_at, "n_dims " + std::to_string(t.n_dims) + " is not in 1..4");
    int64_t n_elements = 1;
    for (uint32_t j = 0; j < t.n_dims; ++j) {
        const uint64_t ne_at = pos_;
        t.ne[j] = read<int64_t>("dimension");
        if (t.ne[j] <= 0)
            fail(ne_at,
                 "dimension " + std::to_string(j) + " is " + std::to_string(t.ne[j]) + ", must be positive");
        if (n_elements > std::numeric_limits<int64_t>::max() / t.ne[j])
            fail(ne_at, "element count overflows 64 bits");
        n_elements *= t.ne[j];
    }

    const uint64_t type_at = pos_;
    const int32_t type_id = read<int32_t>("type");
    t.type = find_type(type_id);
    if (!t.type)
        unsupported(type_at, "ggml type id " + std::to_string(type_id) + " (" + ggml_type_name(type_id) +
                                 ") is not supported by qrt");
    if (!t.type->in_files)
        unsupported(type_at,
                    std::string("type ") + t.type->name + " is compute-only and not supported in files");
    if (t.ne[0] % t.type->block_size != 0)
        fail(type_at, "row length " + std::to_string(t.ne[0]) + " is not a multiple of " + t.type->name +
                          "'s block size " + std::to_string(t.type->block_size));
    if (!tensor_nbytes(*t.type, t.ne[0], n_elements / t.ne[0], &t.nbytes))
        fail(type_at, "byte size of this " + std::string(t.type->name) + " tensor overflows 63 bits");

    const uint64_t offset_at = pos_;
    const uint64_t offset = read<uint64_t>("data offset");
    if (offset != next_offset_)
        fail(offset_at, "data offset " + std::to_string(offset) + ", expected " +
                            std::to_string(next_offset_) +
                            " (tensors must follow each other in info order, each padded to " +
                            std::to_string(f_.alignment_) + " bytes; no gaps, overlap or misalignment)");
    // nbytes < 2^63 and alignment <= 2^24, so the padded size fits; the running sum is checked.
    const uint64_t padded = align_up(t.nbytes, f_.alignment_);
    if (next_offset_ > std::numeric_limits<uint64_t>::max() - padded)
        fail(offset_at, "data section size overflows 64 bits");
    next_offset_ += padded;
    t.offset = offset;  // relative for now; made absolute once the data section is located
    offset_at_.push_back(offset_at);
    f_.tensor_index_.emplace(name, f_.tensors_.size());  // a view into the file's bytes
    f_.tensors_.push_back(std::move(t));
}

void Parser::data_section() {
    section_ = "data";
    // llama.cpp seeks to the padded start only when there are tensors; a tensor-less file may end unpadded.
    f_.data_offset_ = f_.tensors_.empty() ? pos_ : align_up(pos_, f_.alignment_);
    for (size_t i = 0; i < f_.tensors_.size(); ++i) {
        TensorInfo& t = f_.tensors_[i];
        subject_ = "tensor " + quoted(t.name);
        // Both terms are bounded: data_offset <= size + alignment, t.offset < 2^64 - padded (checked).
        const uint64_t start = f_.data_offset_ + t.offset;
        if (start < t.offset || start > f_.size_ || t.nbytes > f_.size_ - start)
            throw FormatError(f_.path_ + ": truncated data at byte " + std::to_string(start) + ": " +
                              subject_ + ": " + t.type->name + " data of " + std::to_string(t.nbytes) +
                              " bytes runs past the end of the file (" + std::to_string(f_.size_) +
                              " bytes; offset field at byte " + std::to_string(offset_at_[i]) + ")");
        t.offset = start;
    }
}

void Parser::run() {
    header();
    for (int64_t i = 0; i < n_kv_; ++i) key_value(i);
    alignment();
    section_ = "tensor info";
    check_count(uint64_t(n_tensors_), kMinTensorInfoBytes, "n_tensors (header byte 8)", "tensor infos");
    for (int64_t i = 0; i < n_tensors_; ++i) tensor_info(i);
    data_section();
}

// ---- File ----

File::File(const std::string& path) : map_(path), path_(path), data_(map_.data()), size_(map_.size()) {
    parse();
}

File File::from_memory(std::string name, const uint8_t* data, uint64_t size) {
    File f;
    f.path_ = std::move(name);
    f.data_ = size ? data : nullptr;
    f.size_ = size;
    f.parse();
    return f;
}

void File::parse() {
    // The path goes into every message: keep it printable.
    if (!valid_utf8(path_) || !printable_utf8(path_)) path_ = quoted(path_);
    Parser(*this).run();
}

const Value* File::find(std::string_view key) const {
    const auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].value;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace qrt::gguf
