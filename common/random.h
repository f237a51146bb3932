#pragma once

#include <string>

namespace edgeloop {

/// `bytes` bytes from the OpenSSL CSPRNG, hex-encoded (2*bytes characters).
/// Used for token secrets and ids, so it must be unpredictable, not just unique.
std::string RandomHex(size_t bytes);

}  // namespace edgeloop
