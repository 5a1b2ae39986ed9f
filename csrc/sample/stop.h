// Stop strings over a stream of detokenized bytes.
//
// Pieces of text arrive one token at a time; a stop string may be split across pieces, even inside a
// multi-byte UTF-8 character. StopMatcher works on bytes: push() returns the bytes that are safe to emit
// now and holds back the longest tail that is still the start of some stop string. When a stop string is
// complete, push() returns the text up to (not including) its first byte, stopped() becomes true, and the
// rest is dropped. When generation ends for another reason (EOS, max_tokens), flush() returns the held
// tail. The concatenation of everything returned is the generated text cut exactly before the earliest
// stop string (ties at one position: the one listed first).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace qrt {

class StopMatcher {
  public:
    // Throws std::invalid_argument for an empty stop string. No stop strings: everything passes through.
    explicit StopMatcher(std::vector<std::string> stops);

    // Appends piece; returns the bytes now safe to emit. After a stop, returns "" and ignores the piece.
    std::string push(std::string_view piece);
    // Returns the held-back bytes (end of generation without a stop); "" after a stop.
    std::string flush();
    void reset();

    bool stopped() const { return stop_index_ >= 0; }
    int stop_index() const { return stop_index_; }  // which stop string matched; -1 if none
    const std::string& held() const { return held_; }
    const std::vector<std::string>& stops() const { return stops_; }

  private:
    size_t hold_length() const;  // longest tail of held_ that is a proper prefix of a stop string

    std::vector<std::string> stops_;
    size_t max_len_ = 0;
    std::string held_;
    int stop_index_ = -1;
};

}  // namespace qrt
