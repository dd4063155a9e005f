#pragma once
// Local parts for new aliases, drawn from OpenSSL's CSPRNG.
//   random: 10 characters of [a-z0-9]      (about 51.7 bits)
//   words:  three words of a 256-word list and three digits,
//           "amber-tiger-coral-417" (3 x 8 + about 10 = about 34 bits)

#include <string>

namespace impalectl {

enum class NameStyle { Random, Words };

// Throws CtlError if the CSPRNG fails.
std::string generate_local_part(NameStyle style);

} // namespace impalectl
