#include "common/random.h"

#include <openssl/rand.h>

#include <cstdlib>
#include <vector>

#include "common/sha256.h"

namespace edgeloop {

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  // A CSPRNG that cannot produce bytes must not be papered over with weaker randomness.
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) std::abort();
  return HexEncode(absl::string_view(reinterpret_cast<const char*>(buf.data()), buf.size()));
}

}  // namespace edgeloop
