#include "log/pseudonymizer.hpp"

#include "core/ascii.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <atomic>
#include <memory>
#include <stdexcept>

namespace impalemail {

namespace {

std::atomic<std::uint64_t> g_next_generation{1};

struct MacDeleter {
    void operator()(EVP_MAC_CTX* c) const noexcept { EVP_MAC_CTX_free(c); }
};
using MacContext = std::unique_ptr<EVP_MAC_CTX, MacDeleter>;

// An HMAC-SHA256 context with the key already absorbed. The one-shot HMAC()
// fetches the algorithm and hashes the key on every call, which profiling
// showed to be most of the milter's own instructions per recipient.
MacContext keyed_context(const std::string& key)
{
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (!mac)
        return nullptr;
    MacContext ctx(EVP_MAC_CTX_new(mac));
    EVP_MAC_free(mac);
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_construct_end()};
    if (!ctx || EVP_MAC_init(ctx.get(), reinterpret_cast<const unsigned char*>(key.data()), key.size(), params) != 1)
        return nullptr;
    return ctx;
}

} // namespace

Pseudonymizer::Pseudonymizer(std::string key, bool show_clear)
    : key_(std::move(key)), show_clear_(show_clear), generation_(g_next_generation++)
{
    if (key_.empty()) {
        key_.resize(32);
        if (RAND_bytes(reinterpret_cast<unsigned char*>(key_.data()), static_cast<int>(key_.size())) != 1)
            throw std::runtime_error("cannot draw a random pseudonym key");
    }
    if (!keyed_context(key_))
        throw std::runtime_error("HMAC-SHA256 is not available from OpenSSL");
}

std::string Pseudonymizer::operator()(std::string_view address) const
{
    if (show_clear_)
        return std::string(address);
    // One keyed context per thread and key (a reload brings a new key with a
    // new generation); each call copies it, so threads never share state.
    thread_local std::uint64_t cached_generation = 0;
    thread_local MacContext cached;
    if (cached_generation != generation_ || !cached) {
        cached = keyed_context(key_);
        cached_generation = generation_;
    }
    const std::string folded = ascii_lowercase(address);
    unsigned char mac[EVP_MAX_MD_SIZE];
    std::size_t len = 0;
    const MacContext c(cached ? EVP_MAC_CTX_dup(cached.get()) : nullptr);
    if (!c || EVP_MAC_update(c.get(), reinterpret_cast<const unsigned char*>(folded.data()), folded.size()) != 1 ||
        EVP_MAC_final(c.get(), mac, &len, sizeof mac) != 1)
        return "h:?";
    static const char hex[] = "0123456789abcdef";
    std::string out = "h:";
    for (std::size_t i = 0; i < 8 && i < len; ++i) {
        out += hex[mac[i] >> 4];
        out += hex[mac[i] & 15];
    }
    return out;
}

} // namespace impalemail
