// OpenBLAS's CBLAS interface, as a Swift-visible system module.
#include <cblas.h>
