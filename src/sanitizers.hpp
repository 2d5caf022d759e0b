// Which sanitizer, if any, this translation unit is built with, for the few
// places that must behave differently under one. GCC defines
// __SANITIZE_ADDRESS__ and __SANITIZE_THREAD__; Clang answers
// __has_feature instead.
#ifndef METRICS_SANITIZERS_HPP_
#define METRICS_SANITIZERS_HPP_

namespace metrics {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kThreadSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif
#else
inline constexpr bool kThreadSanitizer = false;
#endif

}  // namespace metrics

#endif  // METRICS_SANITIZERS_HPP_
