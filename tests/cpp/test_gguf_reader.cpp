// The GGUF reader against hostile bytes: a small valid file built here must parse; every prefix of it and
// every single-byte mutation of its header, metadata and tensor-info region must either parse or throw
// FormatError / UnsupportedError: no other exception, no crash, no out-of-bounds read (run it under
// ASan + UBSan). Each candidate is parsed from an exactly-sized heap copy so that a read one byte past the
// end is caught by ASan.
//
//   test_gguf_reader [REAL.gguf [MAX_POSITIONS]]   also mutates a real file (sampled positions)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "check.h"
#include "errors.h"
#include "gguf/gguf.h"

namespace {

using qrt::gguf::File;
using qrt::gguf::ValueType;

using qrt::testing::check;

// ---- building GGUF bytes ----

struct Bytes {
    std::vector<uint8_t> b;
    void raw(const void* p, size_t n) {
        const auto* c = static_cast<const uint8_t*>(p);
        b.insert(b.end(), c, c + n);
    }
    template <typename T>
    void put(T v) {
        raw(&v, sizeof v);
    }
    void str(std::string_view s) {
        put<uint64_t>(s.size());
        raw(s.data(), s.size());
    }
    void key(std::string_view k, ValueType t) {
        str(k);
        put<int32_t>(int32_t(t));
    }
    void array(std::string_view k, ValueType elem, uint64_t n) {
        key(k, ValueType::ARRAY);
        put<int32_t>(int32_t(elem));
        put<uint64_t>(n);
    }
    void pad_to(size_t alignment) {
        while (b.size() % alignment) b.push_back(0);
    }
};

struct Sample {
    std::vector<uint8_t> bytes;
    size_t info_end = 0;  // end of the tensor infos
    size_t data_offset = 0;
};

// 17 keys of every value type (arrays included) and three tensors (F32, Q8_0, F16); the last tensor's size
// is a multiple of the alignment, so every strict prefix is truncated.
Sample small_file() {
    Bytes m;
    m.raw("GGUF", 4);
    m.put<uint32_t>(3);
    m.put<int64_t>(3);   // n_tensors
    m.put<int64_t>(17);  // n_kv
    m.key("general.architecture", ValueType::STRING);
    m.str("llama");
    m.key("general.alignment", ValueType::UINT32);
    m.put<uint32_t>(32);
    m.key("k.u8", ValueType::UINT8);
    m.put<uint8_t>(200);
    m.key("k.i8", ValueType::INT8);
    m.put<int8_t>(-100);
    m.key("k.u16", ValueType::UINT16);
    m.put<uint16_t>(60000);
    m.key("k.i16", ValueType::INT16);
    m.put<int16_t>(-30000);
    m.key("k.i32", ValueType::INT32);
    m.put<int32_t>(-7);
    m.key("k.f32", ValueType::FLOAT32);
    m.put<float>(0.5f);
    m.key("k.bool", ValueType::BOOL);
    m.put<uint8_t>(1);
    m.key("k.u64", ValueType::UINT64);
    m.put<uint64_t>(1ull << 40);
    m.key("k.i64", ValueType::INT64);
    m.put<int64_t>(-(1ll << 40));
    m.key("k.f64", ValueType::FLOAT64);
    m.put<double>(-2.25);
    m.array("a.u32", ValueType::UINT32, 3);
    for (uint32_t v : {1u, 2u, 3u}) m.put<uint32_t>(v);
    m.array("a.str", ValueType::STRING, 2);
    m.str("tok");
    m.str("\xc3\xa9");
    m.array("a.bool", ValueType::BOOL, 2);
    m.put<uint8_t>(0);
    m.put<uint8_t>(1);
    m.array("a.f64", ValueType::FLOAT64, 1);
    m.put<double>(1e300);
    m.array("a.empty", ValueType::INT8, 0);

    struct T {
        const char* name;
        std::vector<int64_t> ne;
        int32_t type;
        size_t nbytes;
    };
    const T tensors[] = {{"a", {4, 2}, 0, 32}, {"blk.0.b", {32}, 8, 34}, {"c", {16}, 1, 32}};
    uint64_t offset = 0;
    for (const T& t : tensors) {
        m.str(t.name);
        m.put<uint32_t>(uint32_t(t.ne.size()));
        for (int64_t n : t.ne) m.put<int64_t>(n);
        m.put<int32_t>(t.type);
        m.put<uint64_t>(offset);
        offset += (t.nbytes + 31) / 32 * 32;
    }
    Sample s;
    s.info_end = m.b.size();
    m.pad_to(32);
    s.data_offset = m.b.size();
    uint8_t next = 1;
    for (const T& t : tensors) {
        for (size_t i = 0; i < t.nbytes; ++i) m.b.push_back(next++);
        m.pad_to(32);
    }
    s.bytes = std::move(m.b);
    return s;
}

// ---- parsing candidates ----

enum class Outcome { kParsed, kFormatError, kUnsupported, kOther };

uint64_t element_size(ValueType t) {
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
        default:
            return 8;
    }
}

// Reads every metadata element and every tensor byte of a parsed file, so ASan sees any view that points
// outside the buffer.
uint64_t touch_everything(const File& f) {
    uint64_t sum = 0;
    for (const auto& kv : f.metadata()) {
        const auto& v = kv.value;
        if (v.element_type == ValueType::STRING) {
            for (std::string_view s : v.strings)
                for (char c : s) sum += uint8_t(c);
        } else {
            for (uint64_t i = 0; i < v.count * element_size(v.element_type); ++i) sum += v.data[i];
        }
    }
    for (const auto& t : f.tensors()) {  // first and last byte: the views lie inside the buffer
        const uint8_t* p = f.tensor_data(t);
        sum += p[0] + p[t.nbytes - 1];
    }
    return sum;
}

// `data` is parsed from an exactly-sized heap copy (ASan flags even a one-byte over-read) unless
// `in_place`, for a caller whose buffer already ends exactly at `size`.
Outcome parse(const uint8_t* data, size_t size, std::string* message, bool in_place = false) {
    std::unique_ptr<uint8_t[]> copy(size && !in_place ? new uint8_t[size] : nullptr);
    if (copy) std::memcpy(copy.get(), data, size);
    try {
        File f = File::from_memory("candidate.gguf", copy ? copy.get() : data, size);
        volatile uint64_t sink = touch_everything(f);
        (void)sink;
        // What the engine will rely on: aligned tensors inside the file, after the infos.
        for (const auto& t : f.tensors()) {
            if (t.offset % f.alignment() != 0 || t.offset < f.data_offset() || t.nbytes > size - t.offset ||
                t.nbytes == 0) {
                *message = "parsed, but tensor '" + t.name + "' breaks the layout invariants";
                return Outcome::kOther;
            }
        }
        return Outcome::kParsed;
    } catch (const qrt::FormatError& e) {
        *message = e.what();
        return Outcome::kFormatError;
    } catch (const qrt::UnsupportedError& e) {
        *message = e.what();
        return Outcome::kUnsupported;
    } catch (const std::exception& e) {
        *message = std::string("unexpected exception: ") + e.what();
        return Outcome::kOther;
    }
}

// ---- the checks ----

void test_small_file_parses(const Sample& s) {
    const File f = File::from_memory("small.gguf", s.bytes.data(), s.bytes.size());
    check(f.version() == 3 && f.alignment() == 32, "version and alignment");
    check(f.metadata().size() == 17 && f.tensors().size() == 3, "counts");
    check(f.data_offset() == s.data_offset, "data offset");
    check(f.find("general.architecture") && f.find("general.architecture")->str() == "llama", "string value");
    check(f.find("k.i8")->at<int8_t>() == -100 && f.find("k.u16")->at<uint16_t>() == 60000, "small ints");
    check(f.find("k.f64")->at<double>() == -2.25 && f.find("k.bool")->at<bool>(), "f64 and bool");
    check(f.find("k.u64")->at<uint64_t>() == (1ull << 40), "u64");
    const auto* a = f.find("a.u32");
    check(a && a->is_array() && a->count == 3 && a->at<uint32_t>(2) == 3, "u32 array");
    check(f.find("a.str")->str(1) == "\xc3\xa9", "string array");
    check(f.find("a.empty")->count == 0, "empty array");
    check(f.find("missing") == nullptr && f.find_tensor("missing") == nullptr, "absent lookups");
    bool threw = false;
    try {
        (void)f.find("k.u8")->at<uint32_t>();
    } catch (const std::invalid_argument&) {
        threw = true;
    }
    check(threw, "at<T> refuses the wrong type");
    const auto* b = f.find_tensor("blk.0.b");
    check(b && b->type->name == std::string("Q8_0") && b->nbytes == 34, "Q8_0 tensor info");
    check(b && b->offset == s.data_offset + 32 && f.tensor_data(*b)[0] == 33, "Q8_0 tensor data");
    check(f.tensors()[0].ne[0] == 4 && f.tensors()[0].ne[1] == 2 && f.tensors()[0].ne[2] == 1, "ne");
}

void test_file_on_disk(const Sample& s) {
    const std::string path = (std::filesystem::temp_directory_path() / "test_gguf_reader.tmp.gguf").string();
    {
        std::ofstream out(path, std::ios::binary);
        out.write(reinterpret_cast<const char*>(s.bytes.data()), std::streamsize(s.bytes.size()));
    }
    {
        const File f(path);
        check(f.tensors().size() == 3 && f.file_size() == s.bytes.size(), "mmap'd file parses");
        check(f.tensor_data(f.tensors()[2])[0] == 67, "mmap'd tensor data");  // 'c' follows 32 + 34 bytes
    }
    std::remove(path.c_str());
    bool io = false;
    try {
        File missing("/nonexistent/dir/x.gguf");
    } catch (const qrt::IoError& e) {
        io = e.error_number != 0;
    }
    check(io, "missing file -> IoError");
    io = false;
    try {
        File dir(".");
    } catch (const qrt::IoError&) {
        io = true;
    }
    check(io, "directory -> IoError");
}

void test_every_prefix(const Sample& s) {
    int bad = 0;
    for (size_t cut = 0; cut < s.bytes.size(); ++cut) {
        std::string msg;
        const Outcome o = parse(s.bytes.data(), cut, &msg);
        if (o != Outcome::kFormatError || msg.find("truncated") == std::string::npos) {
            if (++bad <= 5) std::fprintf(stderr, "  prefix %zu: %s\n", cut, msg.c_str());
        }
    }
    check(bad == 0, "every strict prefix -> FormatError 'truncated' (" + std::to_string(bad) + " did not)");
    std::string msg;
    check(parse(s.bytes.data(), s.bytes.size(), &msg) == Outcome::kParsed, "the whole file parses");
}

// Mutates one byte at a time at `positions`; returns the number of candidates tried.
// The vector's buffer is exactly its size, so it is parsed in place.
size_t mutate(std::vector<uint8_t>& bytes, const std::vector<size_t>& positions, bool all_values, int* bad,
              int* parsed, int* unsupported) {
    size_t tried = 0;
    for (size_t pos : positions) {
        const uint8_t orig = bytes[pos];
        std::vector<uint8_t> values = {0x00, 0xFF, uint8_t(orig + 1), uint8_t(orig - 1)};
        if (all_values)
            for (int bit = 0; bit < 8; ++bit) values.push_back(uint8_t(orig ^ (1u << bit)));
        else
            values.push_back(uint8_t(orig ^ 0x80));
        for (uint8_t v : values) {
            if (v == orig) continue;
            bytes[pos] = v;
            std::string msg;
            const Outcome o = parse(bytes.data(), bytes.size(), &msg, /*in_place=*/true);
            ++tried;
            *parsed += o == Outcome::kParsed;
            *unsupported += o == Outcome::kUnsupported;
            if (o == Outcome::kOther && ++*bad <= 5)
                std::fprintf(stderr, "  byte %zu = 0x%02x: %s\n", pos, unsigned(v), msg.c_str());
        }
        bytes[pos] = orig;
    }
    return tried;
}

void test_mutations(const Sample& s) {
    std::vector<uint8_t> bytes = s.bytes;
    std::vector<size_t> positions;
    for (size_t i = 0; i < s.data_offset; ++i) positions.push_back(i);  // header, metadata, infos, padding
    int bad = 0, parsed = 0, unsupported = 0;
    const size_t tried = mutate(bytes, positions, true, &bad, &parsed, &unsupported);
    std::printf("small file: %zu single-byte mutations, %d parsed, %d unsupported, the rest FormatError\n",
                tried, parsed, unsupported);
    check(bad == 0, "mutations of the small file -> parse or FormatError/UnsupportedError");
    check(parsed > 0 && unsupported > 0, "mutations reach both outcomes");
}

std::vector<uint8_t> read_file(const char* path) {  // capacity == size: no slack for an over-read to hit
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) return {};
    std::vector<uint8_t> bytes(size_t(in.tellg()));
    in.seekg(0);
    in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size()));
    return in ? bytes : std::vector<uint8_t>{};
}

void test_real_file(const char* path, size_t max_positions) {
    std::vector<uint8_t> bytes = read_file(path);
    check(!bytes.empty(), std::string("read ") + path);
    if (bytes.empty()) return;
    size_t data_offset = 0;
    try {
        data_offset = size_t(File::from_memory(path, bytes.data(), bytes.size()).data_offset());
        check(true, "real file parses");
    } catch (const std::exception& e) {
        check(false, std::string("real file parses: ") + e.what());
        return;
    }
    // Every byte of the header, then positions spread over the metadata and tensor infos (a fixed LCG,
    // so runs are repeatable).
    std::vector<size_t> positions;
    for (size_t i = 0; i < std::min<size_t>(64, data_offset); ++i) positions.push_back(i);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    while (positions.size() < max_positions && data_offset > 64) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        positions.push_back(64 + size_t((x >> 11) % (data_offset - 64)));
    }
    int bad = 0, parsed = 0, unsupported = 0;
    const size_t tried = mutate(bytes, positions, false, &bad, &parsed, &unsupported);
    // Truncations inside the metadata and tensor infos (copies stay small).
    int bad_prefix = 0;
    for (size_t k = 1; k <= 64; ++k) {
        std::string msg;
        const size_t cut = data_offset * k / 65;
        if (parse(bytes.data(), cut, &msg) != Outcome::kFormatError) ++bad_prefix;
    }
    std::printf("%s: %zu mutations (%d parsed, %d unsupported), 64 truncations\n", path, tried, parsed,
                unsupported);
    check(bad == 0, "mutations of the real file -> parse or FormatError/UnsupportedError");
    check(bad_prefix == 0, "truncations of the real file -> FormatError");
}

}  // namespace

int main(int argc, char** argv) {
    const Sample s = small_file();
    test_small_file_parses(s);
    test_file_on_disk(s);
    test_every_prefix(s);
    test_mutations(s);
    if (argc > 1) test_real_file(argv[1], argc > 2 ? size_t(std::stoul(argv[2])) : 200);
    return qrt::testing::report();
}
