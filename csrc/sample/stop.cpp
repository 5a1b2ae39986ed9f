// StopMatcher: see stop.h. Why holding back the longest "tail that starts a stop string" is enough: if a
// stop string began inside text already emitted, then when that text was emitted everything after the
// stop's start was a prefix of it (or the whole stop, which would have been found) and was held back.
#include "sample/stop.h"

#include <algorithm>
#include <stdexcept>

namespace qrt {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
    for (size_t i = 0; i < stops_.size(); ++i) {
        if (stops_[i].empty()) throw std::invalid_argument("stop string " + std::to_string(i) + " is empty");
        max_len_ = std::max(max_len_, stops_[i].size());
    }
}

std::string StopMatcher::push(std::string_view piece) {
    if (stopped()) return {};
    held_.append(piece);

    size_t first = std::string::npos;
    for (size_t i = 0; i < stops_.size(); ++i) {
        const size_t pos = held_.find(stops_[i]);
        if (pos < first) {
            first = pos;
            stop_index_ = int(i);
        }
    }
    if (first != std::string::npos) {
        std::string out = held_.substr(0, first);
        held_.clear();
        return out;
    }

    const size_t emit = held_.size() - hold_length();
    std::string out = held_.substr(0, emit);
    held_.erase(0, emit);
    return out;
}

size_t StopMatcher::hold_length() const {
    const std::string_view h = held_;
    for (size_t k = std::min(h.size(), max_len_ == 0 ? 0 : max_len_ - 1); k > 0; --k) {
        const std::string_view tail = h.substr(h.size() - k);
        for (const std::string& s : stops_)
            if (s.size() > k && std::string_view(s).substr(0, k) == tail) return k;
    }
    return 0;
}

std::string StopMatcher::flush() {
    std::string out;
    out.swap(held_);
    return out;
}

void StopMatcher::reset() {
    held_.clear();
    stop_index_ = -1;
}

}  // namespace qrt
