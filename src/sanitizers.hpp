// Which sanitizer, if any, this translation unit is built with, for the few
// places that must behave differently under one. GCC defines
// __SANITIZE_ADDRESS__ and __SANITIZE_THREAD__; Clang answers
// __has_feature instead.
#ifndef METRICS_SANITIZERS_HPP_
#define METRICS_SANITIZERS_HPP_

#if defined(__has_feature)
#define METRICS_HAS_FEATURE(feature) __has_feature(feature)
#else
#define METRICS_HAS_FEATURE(feature) 0
#endif

namespace metrics {

inline constexpr bool kAddressSanitizer =
#if defined(__SANITIZE_ADDRESS__) || METRICS_HAS_FEATURE(address_sanitizer)
    true;
#else
    false;
#endif

inline constexpr bool kThreadSanitizer =
#if defined(__SANITIZE_THREAD__) || METRICS_HAS_FEATURE(thread_sanitizer)
    true;
#else
    false;
#endif

}  // namespace metrics

#undef METRICS_HAS_FEATURE

#endif  // METRICS_SANITIZERS_HPP_
