// The C++ test binaries' harness: count checks, print failures, finish with "N passed, M failed".
#pragma once

#include <cstdio>
#include <exception>
#include <functional>
#include <string>

namespace qrt::testing {

inline int g_passed = 0, g_failed = 0;

inline void check(bool ok, const std::string& what) {
    if (ok) {
        ++g_passed;
    } else {
        ++g_failed;
        std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    }
}

// f() must throw an E whose message contains needle.
template <typename E>
void check_throws(const std::function<void()>& f, const std::string& what, const std::string& needle = "") {
    try {
        f();
        check(false, what + ": no exception");
    } catch (const E& e) {
        check(needle.empty() || std::string(e.what()).find(needle) != std::string::npos,
              what + ": message '" + e.what() + "' lacks '" + needle + "'");
    } catch (const std::exception& e) {
        check(false, what + ": wrong exception type: " + e.what());
    }
}

// Prints the closing line CI reads and returns main's exit status.
inline int report() {
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

}  // namespace qrt::testing
