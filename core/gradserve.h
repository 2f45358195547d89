/* gradserve.h - the public C API of libgradserve: include this one header. */
#ifndef GRADSERVE_H
#define GRADSERVE_H

#define GS_VERSION "0.1.0"

#include "gs_error.h"
#include "gs_rng.h"
#include "gs_vmath.h"
#include "gs_dist.h"
#include "gs_estim.h"
#include "gs_sac.h"
#include "gs_head.h"

#endif
