#pragma once
// An in-memory AliasStore for tests: a map, plus a switch that makes every
// read fail the way an unreachable Redis does.

#include "core/alias_store.hpp"

#include <map>
#include <string>

namespace impalemail {

class MemoryStore : public AliasStore {
public:
    void set(const std::string& key, const std::string& value) { data_[key] = value; }
    void erase(const std::string& key) { data_.erase(key); }
    void fail_with(std::string error) { failure_ = std::move(error); }
    void recover() { failure_.clear(); }
    std::size_t reads() const noexcept { return reads_; }

    StoreReply get(const std::string& key) override
    {
        ++reads_;
        if (!failure_.empty())
            return StoreReply::error(failure_);
        const auto it = data_.find(key);
        return it == data_.end() ? StoreReply::not_found() : StoreReply::found(it->second);
    }

private:
    std::map<std::string, std::string> data_;
    std::string failure_;
    std::size_t reads_ = 0;
};

} // namespace impalemail
