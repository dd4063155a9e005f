#include "store/redis_pool.hpp"

namespace impalemail {

std::unique_ptr<RedisLink> RedisPool::take()
{
    std::lock_guard lock(mutex_);
    if (idle_.empty())
        return nullptr;
    auto link = std::move(idle_.back());
    idle_.pop_back();
    return link;
}

void RedisPool::give_back(std::unique_ptr<RedisLink> link)
{
    if (!link || !link->ctx)
        return;
    std::unique_lock lock(mutex_);
    if (link->generation != generation_ || idle_.size() >= max_idle_) {
        lock.unlock();
        link.reset(); // closes outside the lock
        return;
    }
    idle_.push_back(std::move(link));
}

void RedisPool::discard_idle()
{
    std::vector<std::unique_ptr<RedisLink>> closing;
    {
        std::lock_guard lock(mutex_);
        ++generation_;
        closing.swap(idle_);
    }
}

std::uint64_t RedisPool::generation() const
{
    std::lock_guard lock(mutex_);
    return generation_;
}

bool RedisPool::defer(std::string command)
{
    std::lock_guard lock(mutex_);
    if (backlog_.size() >= kMaxBacklog)
        return false;
    backlog_.push_back(std::move(command));
    return true;
}

std::vector<std::string> RedisPool::take_backlog()
{
    std::vector<std::string> out;
    std::lock_guard lock(mutex_);
    out.swap(backlog_);
    return out;
}

std::size_t RedisPool::idle() const
{
    std::lock_guard lock(mutex_);
    return idle_.size();
}

} // namespace impalemail
