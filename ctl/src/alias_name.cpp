#include "alias_name.hpp"

#include "ctl_error.hpp"

#include <openssl/err.h>
#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <cstdio>

namespace impalectl {

namespace {

// Exactly 256 distinct lower-case words, so one random byte picks one
// without bias.
constexpr std::array<const char*, 256> kWords = {
    "acorn", "agate", "alder", "amber", "anchor", "apple", "apron", "arbor", "arrow", "aspen", "atlas", "attic",
    "azure", "badge", "bagel", "baker", "bamboo", "banjo", "barley", "basil", "beach", "beacon", "beaver",
    "berry", "birch", "bison", "blaze", "bloom", "bluff", "board", "bonsai", "brass", "brave", "breeze",
    "brick", "brook", "bruin", "cabin", "cactus", "camel", "candle", "canoe", "canyon", "cargo", "carrot",
    "cedar", "cello", "chalk", "cherry", "cider", "cinder", "citrus", "clay", "cloud", "clover", "cobalt",
    "cocoa", "comet", "copper", "coral", "cosmos", "cotton", "cove", "crane", "creek", "cricket", "crisp",
    "crown", "cumin", "daisy", "delta", "denim", "desert", "dingo", "dolphin", "dove", "dragon", "dune",
    "eagle", "ebony", "echo", "eclipse", "elder", "ember", "emerald", "falcon", "fern", "fiddle", "field",
    "fig", "finch", "fjord", "flint", "flora", "forest", "fossil", "fox", "frost", "gale", "garnet", "gecko",
    "geyser", "ginger", "glacier", "globe", "gnome", "goose", "granite", "grape", "gravel", "grove", "gull",
    "harbor", "hawk", "hazel", "heron", "hickory", "honey", "hornet", "husky", "igloo", "indigo", "iris",
    "island", "ivory", "jade", "jasper", "jelly", "jetty", "juniper", "kayak", "kelp", "kettle", "kiwi",
    "koala", "lagoon", "lantern", "larch", "lark", "lava", "lemon", "lilac", "lily", "lime", "linen", "loom",
    "lotus", "lunar", "lynx", "magnet", "mango", "maple", "marble", "meadow", "melon", "mesa", "meteor", "mint",
    "mist", "mocha", "moose", "moss", "nectar", "nickel", "nimbus", "noble", "nutmeg", "oak", "oasis", "ocean",
    "olive", "onyx", "opal", "orbit", "orchid", "otter", "owl", "oyster", "panda", "paper", "parrot", "peach",
    "pearl", "pebble", "pepper", "pilot", "pine", "piper", "plum", "polar", "pond", "pony", "poppy", "prairie",
    "prism", "puffin", "quail", "quartz", "quill", "rabbit", "radar", "radish", "raven", "reed", "reef",
    "ridge", "river", "robin", "rocket", "rose", "ruby", "saffron", "sage", "salmon", "sand", "satin", "scout",
    "sepia", "shadow", "shell", "sierra", "silk", "silver", "slate", "sparrow", "spruce", "squid", "stone",
    "stork", "storm", "summit", "sunny", "swan", "tango", "teal", "thistle", "thunder", "tiger", "timber",
    "topaz", "tulip", "tundra", "turtle", "umber", "valley", "velvet", "vine", "violet", "walnut", "wave",
    "willow", "wren", "yarrow", "zebra", "zephyr", "zinc",
};

void random_bytes(unsigned char* out, int n)
{
    if (RAND_bytes(out, n) != 1) {
        char why[256];
        ERR_error_string_n(ERR_get_error(), why, sizeof why);
        throw CtlError(Exit::Redis, std::string("the random number generator failed: ") + why);
    }
}

// A uniform value in [0, bound) for bound <= 256: bytes at or above the
// largest multiple of `bound` are thrown away (no modulo bias).
unsigned uniform_below(unsigned bound)
{
    const unsigned limit = 256 - 256 % bound;
    for (;;) {
        std::array<unsigned char, 32> buf{};
        random_bytes(buf.data(), static_cast<int>(buf.size()));
        for (unsigned char b : buf)
            if (b < limit)
                return b % bound;
    }
}

} // namespace

std::string generate_local_part(NameStyle style)
{
    if (style == NameStyle::Random) {
        static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
        constexpr unsigned kSize = sizeof kAlphabet - 1; // 36
        std::string out;
        for (int i = 0; i < 10; ++i)
            out += kAlphabet[uniform_below(kSize)];
        return out;
    }
    // Three words: two would give only about 26 bits, guessable over time
    // even at SMTP's rate limits.
    unsigned char pick[3];
    random_bytes(pick, 3);
    // Three digits: 1000 is above 256, so combine two uniform draws
    // (0..9 and 0..99) instead.
    const unsigned digits = uniform_below(10) * 100 + uniform_below(100);
    char num[4];
    std::snprintf(num, sizeof num, "%03u", digits);
    return std::string(kWords[pick[0]]) + '-' + kWords[pick[1]] + '-' + kWords[pick[2]] + '-' + num;
}

} // namespace impalectl
