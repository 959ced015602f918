/*
 * libpasha's version at compile time. Included by pasha.h; compare with
 * psh_version_number() for the library loaded at run time. The one version
 * source is project(version:) in meson.build: meson setup stops when this
 * file disagrees with it (include/pasha/meson.build).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef PASHA_PASHA_VERSION_H
#define PASHA_PASHA_VERSION_H

/** The major version: incompatible releases (the SONAME follows it from 1.0). */
#define PSH_VERSION_MAJOR 0
/** The minor version: releases that add to the API. */
#define PSH_VERSION_MINOR 2
/** The patch version: fixes only. */
#define PSH_VERSION_PATCH 0

/** MAJOR * 10000 + MINOR * 100 + PATCH, e.g. 200 for 0.2.0 (as zstd). */
#define PSH_VERSION_NUMBER (PSH_VERSION_MAJOR * 10000 + PSH_VERSION_MINOR * 100 + PSH_VERSION_PATCH)

/** The version as the string "MAJOR.MINOR.PATCH", e.g. "0.2.0". */
#define PSH_VERSION_STRING "0.2.0"

#endif /* PASHA_PASHA_VERSION_H */
