// Buffers that give their memory back: shared by every per-session buffer,
// so that an idle session holds little whatever it once received or sent.
#ifndef METRICS_BUFFER_HPP_
#define METRICS_BUFFER_HPP_

#include <cstddef>

namespace metrics {

// Empties `c` (a std::string or std::vector); if it had grown past `bytes` of
// capacity, also returns that memory to the allocator.
template <typename Container>
void clear_and_trim(Container& c, std::size_t bytes) {
  if (c.capacity() * sizeof(typename Container::value_type) > bytes) {
    Container().swap(c);
  } else {
    c.clear();
  }
}

}  // namespace metrics

#endif  // METRICS_BUFFER_HPP_
