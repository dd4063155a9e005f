#include "log/pseudonymizer.hpp"

#include "core/ascii.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace impalemail {

Pseudonymizer::Pseudonymizer(std::string key, bool show_clear) : key_(std::move(key)), show_clear_(show_clear)
{
    if (key_.empty()) {
        key_.resize(32);
        if (RAND_bytes(reinterpret_cast<unsigned char*>(key_.data()), static_cast<int>(key_.size())) != 1)
            throw std::runtime_error("cannot draw a random pseudonym key");
    }
}

std::string Pseudonymizer::operator()(std::string_view address) const
{
    if (show_clear_)
        return std::string(address);
    const std::string folded = ascii_lowercase(address);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
              reinterpret_cast<const unsigned char*>(folded.data()), folded.size(), mac, &len))
        return "h:?";
    static const char hex[] = "0123456789abcdef";
    std::string out = "h:";
    for (unsigned i = 0; i < 8 && i < len; ++i) {
        out += hex[mac[i] >> 4];
        out += hex[mac[i] & 15];
    }
    return out;
}

} // namespace impalemail
