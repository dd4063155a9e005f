#include "store/redis_pool.hpp"

#include <catch2/catch.hpp>

using namespace impalemail;

namespace {

// The pool only keeps links with a context; one that never connected is
// enough for its bookkeeping, and needs no server.
std::unique_ptr<RedisLink> link_for(const RedisPool& pool)
{
    auto link = std::make_unique<RedisLink>();
    link->ctx.reset(redisConnectUnix("/nonexistent/impalemail-test.sock"));
    link->generation = pool.generation();
    return link;
}

} // namespace

TEST_CASE("an empty pool has nothing to lend")
{
    RedisPool pool;
    CHECK(pool.take() == nullptr);
    CHECK(pool.idle() == 0);
}

TEST_CASE("a link given back is lent again, most recent first")
{
    RedisPool pool;
    auto a = link_for(pool);
    auto b = link_for(pool);
    RedisLink* const first = a.get();
    RedisLink* const second = b.get();
    pool.give_back(std::move(a));
    pool.give_back(std::move(b));
    CHECK(pool.idle() == 2);
    CHECK(pool.take().get() == second);
    CHECK(pool.take().get() == first);
    CHECK(pool.take() == nullptr);
}

TEST_CASE("links without a context are not kept")
{
    RedisPool pool;
    pool.give_back(std::make_unique<RedisLink>());
    pool.give_back(nullptr);
    CHECK(pool.idle() == 0);
}

TEST_CASE("the pool keeps at most max_idle links")
{
    RedisPool pool(2);
    for (int i = 0; i < 5; ++i)
        pool.give_back(link_for(pool));
    CHECK(pool.idle() == 2);
}

TEST_CASE("discard_idle closes the idle links and refuses the ones lent before it")
{
    RedisPool pool;
    pool.give_back(link_for(pool));
    auto lent = link_for(pool);
    pool.discard_idle();
    CHECK(pool.idle() == 0);
    pool.give_back(std::move(lent));
    CHECK(pool.idle() == 0);
    pool.give_back(link_for(pool)); // opened after the discard
    CHECK(pool.idle() == 1);
}

TEST_CASE("deferred commands are handed over once, in order, and bounded")
{
    RedisPool pool;
    CHECK(pool.defer("first"));
    CHECK(pool.defer("second"));
    CHECK(pool.take_backlog() == std::vector<std::string>{"first", "second"});
    CHECK(pool.take_backlog().empty());

    for (std::size_t i = 0; i < RedisPool::kMaxBacklog; ++i)
        CHECK(pool.defer("x"));
    CHECK_FALSE(pool.defer("one too many"));
    CHECK(pool.take_backlog().size() == RedisPool::kMaxBacklog);
}
