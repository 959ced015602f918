/* The C side of the Fortran module pasha_mpi: turns the Fortran handle of
 * a communicator (type(MPI_Comm)'s MPI_VAL) into a C MPI_Comm with
 * MPI_Comm_f2c and calls psh_context_create_mpi. Not part of libpasha's
 * ABI: it is linked into the Fortran binding's own library.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include <string.h>

#include "pasha/pasha_mpi.h"

int psh_fortran_context_create_mpi(psh_context **out, MPI_Fint comm, int local_kind, int local_workers);
int psh_fortran_context_create_mpi_ext(psh_context **out, MPI_Fint comm, const psh_context_options *local);

/* MPI_Comm_f2c needs MPI: before MPI_Init (or after MPI_Finalize) hand any
 * valid communicator over, and the library reports it. */
static MPI_Comm comm_of(MPI_Fint comm)
{
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized ? MPI_Comm_f2c(comm) : MPI_COMM_SELF;
}

int psh_fortran_context_create_mpi(psh_context **out, MPI_Fint comm, int local_kind, int local_workers)
{
    psh_kind kind; /* any int reaches the library's own check */
    memcpy(&kind, &local_kind, sizeof kind);
    return psh_context_create_mpi(out, comm_of(comm), kind, local_workers);
}

int psh_fortran_context_create_mpi_ext(psh_context **out, MPI_Fint comm, const psh_context_options *local)
{
    return psh_context_create_mpi_ext(out, comm_of(comm), local);
}
