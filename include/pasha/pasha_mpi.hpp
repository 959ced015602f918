/*
 * libpasha over MPI in C++: pasha::mpi wrappers over pasha_mpi.h, with the
 * conventions of pasha.hpp (RAII, pasha::error for every status other than
 * PSH_OK). Installed only when libpasha is built with -Dmpi=enabled; link
 * with libpasha_mpi INSTEAD of libpasha (pkg-config pasha-mpi, or CMake
 * pasha::pasha_mpi), as for pasha_mpi.h.
 *
 *   pasha::mpi::context c(MPI_COMM_WORLD, pasha::kind::threads, 4);
 *   auto out = pasha::alloc<double>(c, {n});        // one buffer per node
 *   double *po = out.data();
 *   pasha::map(c, n, [=](int, std::size_t i) { po[i] = f(i); });  // global i
 *   pasha::mpi::gather(c, out, 0);
 *
 * As in pasha_mpi.h, making and destroying the last copy of an MPI context,
 * allocating and freeing its arrays, maps and gather/allgather/reduce are
 * COLLECTIVE: every rank calls them in the same order. An exception from a
 * kernel ends the map on every rank with pasha::error(PSH_EKERNEL); on the
 * rank that threw, what() contains the exception's text, on the others the
 * message of the lowest failing rank ("rank N: ..."). Destroy MPI contexts
 * and their arrays before MPI_Finalize.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef PASHA_PASHA_MPI_HPP
#define PASHA_PASHA_MPI_HPP

#include <mpi.h>

#include "pasha.hpp"
#include "pasha_mpi.h"

namespace pasha {
namespace mpi {

/** Element-wise operations of reduce (PSH_OP_*). */
enum class op : int { sum = PSH_OP_SUM, min = PSH_OP_MIN, max = PSH_OP_MAX };

/** A PSH_MPI context over the ranks of comm (collective; comm is
 *  duplicated). Each rank runs its share with a local context of local_kind
 *  (serial, threads or processes) and local_workers workers (<= 0: the
 *  default). A pasha::context: use it wherever one is taken. */
class context : public pasha::context {
public:
    /** Create it (collective over comm): local_kind and local_workers as
     *  psh_context_create_mpi's. Throws pasha::error. */
    explicit context(MPI_Comm comm, pasha::kind local_kind = pasha::kind::threads, int local_workers = 0)
        : pasha::context(make(comm, local_kind, local_workers))
    {
    }
    /** This process's rank in the context's communicator. */
    int rank() const noexcept { return psh_mpi_rank(get()); }
    /** The number of ranks. */
    int size() const noexcept { return psh_mpi_size(get()); }

private:
    static pasha::context make(MPI_Comm comm, pasha::kind local_kind, int local_workers)
    {
        psh_context *c = nullptr;
        pasha::detail::check(psh_context_create_mpi(&c, comm, static_cast<psh_kind>(local_kind), local_workers));
        return pasha::context::adopt(c);
    }
};

/** The rank / number of ranks of any pasha::context; -1 / 0 when it is not
 *  an MPI context. */
inline int rank(const pasha::context &c) noexcept { return psh_mpi_rank(c.get()); }
inline int size(const pasha::context &c) noexcept { return psh_mpi_size(c.get()); }

/** The whole array on root after a map in which every index was written by
 *  one rank (psh_mpi_gather; collective). */
template <class T>
void gather(const pasha::context &c, array<T> &a, int root)
{
    pasha::detail::check(psh_mpi_gather(pasha::detail::checked(c), a.get(), root));
}

/** The whole array on every rank (psh_mpi_allgather; collective). */
template <class T>
void allgather(const pasha::context &c, array<T> &a)
{
    pasha::detail::check(psh_mpi_allgather(pasha::detail::checked(c), a.get()));
}

/** Element-wise o across ranks (nodes, for arrays of the MPI context), the
 *  result in a on root (psh_mpi_reduce; collective), e.g. of per_worker
 *  accumulators; then pasha::sum_per_worker(a) on root. */
template <class T>
void reduce(const pasha::context &c, array<T> &a, op o, int root)
{
    pasha::detail::check(psh_mpi_reduce(pasha::detail::checked(c), a.get(), static_cast<int>(o), root));
}

}  // namespace mpi
}  // namespace pasha

#endif /* PASHA_PASHA_MPI_HPP */
