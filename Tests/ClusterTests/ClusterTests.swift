// The cluster/ scripts against real processes: Slurm jobs through slurm.sbatch on a local slurmctld and
// slurmd, mpirun through run-hostfile.sh, sweep.sh's launches of `cavpt-dist sweep`, and real runs of it.
// DistributedCheck `info` stands in for `cavpt-dist train` as the MPI payload where only the launch
// is under test.
import Foundation
import Testing

// MARK: - Slurm: real jobs on a local single-node cluster

/// Slurm needs its client commands and root (slurmd and munged are started by cluster/local-slurm.sh).
let slurmAvailable = findInPath("sbatch") != nil && geteuid() == 0

@Suite(
    .serialized,
    .enabled(
        if: slurmAvailable,
        "needs sbatch on PATH and root: apt-get install -y slurm-wlm munge libpmix-dev"))
struct SlurmTests {
    @Test func batchScriptStartsEveryRankAndAFailingRankEndsTheJob() throws {
        let lock = try SlurmLock()
        defer { lock.release() }
        let directory = try temporaryDirectory("slurm")
        defer { try? FileManager.default.removeItem(at: directory) }
        let slurm = cluster("local-slurm.sh")

        let started = try run(slurm, ["start"], environment: testSlurmEnvironment)
        // Registered before anything else can throw, so the daemons never outlive the test.
        defer {
            if let stopped = try? run(slurm, ["stop"], environment: testSlurmEnvironment), stopped.status != 0 {
                Issue.record("local-slurm.sh stop failed:\n\(stopped.output)")
            }
        }
        try #require(started.status == 0, "local-slurm.sh start failed:\n\(started.output)")
        let status = try run(slurm, ["status"], environment: testSlurmEnvironment)
        #expect(status.status == 0, "local-slurm.sh status after start:\n\(status.output)")

        // Every job goes in at once; the node declares 32 CPUs, so they run side by side.
        struct InfoJob { var ranks: Int; var cpusPerTask: Int; var launcher: String; var id = "" }
        var infoJobs = [
            InfoJob(ranks: 2, cpusPerTask: 2, launcher: "srun"),
            InfoJob(ranks: 3, cpusPerTask: 1, launcher: "srun"),
            InfoJob(ranks: 2, cpusPerTask: 1, launcher: "mpirun"),
            InfoJob(ranks: 3, cpusPerTask: 1, launcher: "mpirun"),
        ]
        for index in infoJobs.indices {
            let job = infoJobs[index]
            infoJobs[index].id = try submit(
                [
                    "--nodes=1", "--ntasks-per-node=\(job.ranks)", "--cpus-per-task=\(job.cpusPerTask)", "--time=2",
                    "--output=\(directory.path)/info-%j.out", cluster("slurm.sbatch").path,
                ],
                payload: ["CAVPT_DIST_COMMAND": "info", "CAVPT_DIST_LAUNCHER": job.launcher])
        }
        // A rank that fails must end the whole job with its line, not leave the others waiting.
        let failingJob = try submit(
            [
                "--ntasks-per-node=3", "--cpus-per-task=1", "--time=2", "--output=\(directory.path)/fail-%j.out",
                cluster("slurm.sbatch").path,
            ],
            payload: ["CAVPT_DIST_COMMAND": "fail"])
        let states = try waitForJobs(infoJobs.map(\.id) + [failingJob], timeout: 45)

        for job in infoJobs {
            #expect(
                states[job.id] == "COMPLETED",
                "\(job.launcher) job with \(job.ranks) ranks: \(states[job.id] ?? "no state")")
            let output = try String(contentsOf: directory.appendingPathComponent("info-\(job.id).out"), encoding: .utf8)
            let lines = output.split(separator: "\n").map(String.init)
            #expect(
                lines.first == "cavpt-dist job \(job.id): \(job.ranks) ranks on 1 node(s), "
                    + "\(job.cpusPerTask) BLAS threads per rank, launcher \(job.launcher)", "\(output)")
            // Rank 0 prints every rank's line in rank order: all N ranks ran in one MPI world of size N.
            let ranks = lines.filter { $0.hasPrefix("rank ") }
            #expect(
                ranks.map { $0.split(separator: " ").prefix(4).joined(separator: " ") }
                    == (0..<job.ranks).map { "rank \($0)/\(job.ranks) local \($0)/\(job.ranks)" }, "\(output)")
            #expect(ranks.allSatisfy { $0.contains("backend Open MPI") }, "\(output)")
        }

        #expect(states[failingJob] == "FAILED")
        let failure = try String(
            contentsOf: directory.appendingPathComponent("fail-\(failingJob).out"), encoding: .utf8)
        #expect(
            failure.contains(
                "error: [rank 1] corrupt image train/cat/003.jpg: not a JPEG file (read only by this rank)"),
            "\(failure)")

        let stopped = try run(slurm, ["stop"], environment: testSlurmEnvironment)
        #expect(stopped.status == 0, "\(stopped.output)")
        let after = try run(slurm, ["status"], environment: testSlurmEnvironment)
        #expect(after.status == 3, "local-slurm.sh status after stop:\n\(after.output)")
    }

    /// The real trainer under slurm.sbatch, stopped as Slurm stops jobs: SIGUSR1 to the batch shell
    /// (what `--signal=B:USR1@120` sends before the time limit) with either launcher, and scancel's
    /// SIGTERM. Each job checkpoints a step boundary; the USR1 ones exit 75 and print the sbatch
    /// command that resumes them, and that command finishes the run.
    @Test func preemptedJobsCheckpointAndTheirResumeCommandFinishesThem() throws {
        let lock = try SlurmLock()
        defer { lock.release() }
        let directory = try temporaryDirectory("slurm-preempt")
        defer { try? FileManager.default.removeItem(at: directory) }
        let slurm = cluster("local-slurm.sh")
        let started = try run(slurm, ["start"], environment: testSlurmEnvironment)
        defer { _ = try? run(slurm, ["stop"], environment: testSlurmEnvironment) }
        try #require(started.status == 0, "local-slurm.sh start failed:\n\(started.output)")

        let trainer = try demoData(in: directory, shots: 6, testPerClass: 4)
        func trainArguments(_ output: String) -> [String] {
            [
                "--dataset", directory.path + "/data/synthetic.yaml", "--method", "vpt_deep", "--data-root",
                directory.path + "/data",
                "--model", directory.path + "/model", "--output", output, "--seed", "1", "--set", "train.epochs=30",
                "--set", "train.batchSize=8", "--set", "train.logEvery=3", "--set", "train.workers=1",
            ]
        }
        struct Job { var launcher: String; var signal: String; var id = ""; var run = "" }
        var jobs = [
            Job(launcher: "srun", signal: "USR1"), Job(launcher: "mpirun", signal: "USR1"),
            Job(launcher: "srun", signal: "TERM"),
        ]
        for index in jobs.indices {
            jobs[index].run = directory.path + "/run\(index)"
            // 100 ms asleep before each step: 30 epochs outlast the signal without using the CPU.
            jobs[index].id = try submit(
                [
                    "--ntasks-per-node=2", "--cpus-per-task=1", "--time=5",
                    "--output=\(directory.path)/job\(index).out",
                    cluster("slurm.sbatch").path,
                ] + trainArguments(jobs[index].run),
                payload: ["CAVPT_DIST_LAUNCHER": jobs[index].launcher, "CAVPT_DIST_FAULT": "slow-steps:100"],
                binary: trainer)
        }
        let scancel = try #require(findInPath("scancel"))
        for (index, job) in jobs.enumerated() {
            // Signal once training is under way: the third epoch's progress line is in the job's output.
            let deadline = Date().addingTimeInterval(60)
            while !(((try? String(contentsOfFile: "\(directory.path)/job\(index).out", encoding: .utf8)) ?? "")
                .contains("epoch 3/30"))
                && Date() < deadline
            { usleep(100_000) }
            let signalled = try run(
                scancel, job.signal == "USR1" ? ["--batch", "--signal=USR1", job.id] : [job.id],
                environment: testSlurmEnvironment)
            #expect(signalled.status == 0, "\(signalled.output)")
        }
        _ = try waitForJobs(jobs.map(\.id), timeout: 60)
        let scontrol = try #require(findInPath("scontrol"))
        for (index, job) in jobs.enumerated() {
            let output = (try? String(contentsOfFile: "\(directory.path)/job\(index).out", encoding: .utf8)) ?? ""
            let context = "\(job.launcher) SIG\(job.signal):\n\(output)"
            let status =
                (try? JSONSerialization.jsonObject(
                    with: Data(contentsOf: URL(fileURLWithPath: job.run + "/status.json"))))
                as? [String: Any] ?? [:]
            // scancel signals every process: the ranks' own SIGTERM and the batch shell's forwarded
            // SIGUSR1 race, and whichever comes first is the one reported.
            let allowed = job.signal == "USR1" ? ["SIGUSR1"] : ["SIGTERM", "SIGUSR1"]
            #expect(status["state"] as? String == "preempted", "\(status)\n\(context)")
            #expect(allowed.contains(status["signal"] as? String ?? "none"), "\(status)\n\(context)")
            let checkpoint = status["checkpoint"] as? String ?? "none"
            #expect(
                FileManager.default.fileExists(atPath: checkpoint + "/state.safetensors"), "\(checkpoint)\n\(context)")
            #expect(!FileManager.default.fileExists(atPath: job.run + "/results.json"))
            let shown = try run(scontrol, ["show", "job", job.id], environment: testSlurmEnvironment)
            if job.signal == "USR1" {
                #expect(shown.stdout.contains("ExitCode=75:0"), "\(shown.stdout)")
                #expect(
                    output.contains("cavpt-dist job \(job.id) preempted (exit 75); resume with: sbatch "), "\(context)")
            }
        }

        // The printed command, run as printed, finishes the first run.
        let first = (try? String(contentsOfFile: "\(directory.path)/job0.out", encoding: .utf8)) ?? ""
        let line = try #require(first.split(separator: "\n").first { $0.contains("resume with: sbatch ") })
        let command = String(line[line.range(of: "resume with: ")!.upperBound...])
        #expect(command.contains(cluster("slurm.sbatch").path) && command.hasSuffix("--resume "), "\(command)")
        let resubmitted = try run(
            URL(fileURLWithPath: "/bin/sh"), ["-c", command],
            environment: testSlurmEnvironment.merging(["CAVPT_DIST_BINARY": trainer]) { $1 },
            directory: directory)
        try #require(resubmitted.status == 0, "\(command)\n\(resubmitted.output)")
        let resumedJob = String(try #require(resubmitted.stdout.split(separator: " ").last).prefix { $0.isNumber })
        let states = try waitForJobs([resumedJob], timeout: 60)
        let resumedOutput =
            (try? String(contentsOfFile: "\(directory.path)/slurm-cavpt-dist-\(resumedJob).out", encoding: .utf8)) ?? ""
        #expect(states[resumedJob] == "COMPLETED", "\(resumedOutput)")
        #expect(resumedOutput.contains("resumed from \(jobs[0].run)/checkpoints/"), "\(resumedOutput)")
        #expect(FileManager.default.fileExists(atPath: jobs[0].run + "/results.json"))
    }

    /// `cavpt-dist sweep` inside one allocation, as `cluster/sweep.sh --slurm` submits it (slurm.sbatch
    /// with CAVPT_DIST_COMMAND=sweep): 4 tasks in 2 groups of 2 (srun, PMIx), 4 jobs trained and summarised.
    @Test func aSweepRunsInsideOneAllocation() throws {
        let lock = try SlurmLock()
        defer { lock.release() }
        let directory = try temporaryDirectory("slurm-sweep")
        defer { try? FileManager.default.removeItem(at: directory) }
        let slurm = cluster("local-slurm.sh")
        let started = try run(slurm, ["start"], environment: testSlurmEnvironment)
        defer { _ = try? run(slurm, ["stop"], environment: testSlurmEnvironment) }
        try #require(started.status == 0, "local-slurm.sh start failed:\n\(started.output)")
        let trainer = try demoData(in: directory, shots: 4, testPerClass: 2)
        let submitted = try run(
            cluster("sweep.sh"),
            [
                "--slurm", "--sbatch-arg=--parsable", "--sbatch-arg=--ntasks-per-node=4",
                "--sbatch-arg=--cpus-per-task=1",
                "--sbatch-arg=--time=5", "--sbatch-arg=--output=\(directory.path)/sweep.out",
                "--datasets", directory.path + "/data/synthetic.yaml", "--methods", "vpt_deep,coop", "--seeds", "1,2",
                "--ranks-per-job", "2", "--data-root", directory.path + "/data", "--model", directory.path + "/model",
                "--output", directory.path + "/runs", "--set", "train.epochs=2", "--set", "train.batchSize=4",
                "--set", "train.workers=1",
            ],
            environment: testSlurmEnvironment.merging(["CAVPT_DIST_BINARY": trainer]) { $1 })
        try #require(submitted.status == 0, "\(submitted.output)")
        let id = String(submitted.stdout.prefix { $0.isNumber })
        let states = try waitForJobs([id], timeout: 90)
        let output = (try? String(contentsOfFile: "\(directory.path)/sweep.out", encoding: .utf8)) ?? ""
        #expect(states[id] == "COMPLETED", "\(output)")
        #expect(output.contains("sweep: 4 job(s)") && output.contains("2 group(s) of 2 rank(s)"), "\(output)")
        #expect(output.contains("sweep: 4 completed, 0 failed"), "\(output)")
        for method in ["vpt_deep", "coop"] {
            for seed in [1, 2] {
                #expect(
                    FileManager.default.fileExists(
                        atPath: directory.path + "/runs/synthetic/\(method)/16shot/default/seed\(seed)/results.json"))
            }
        }
    }

    /// Submits slurm.sbatch with DistributedCheck as the binary; returns the job id.
    func submit(_ arguments: [String], payload: [String: String], binary: String? = nil) throws -> String {
        var environment = testSlurmEnvironment.merging(payload) { $1 }
        environment["CAVPT_DIST_BINARY"] = try binary ?? checkExecutable().path
        let result = try run(try #require(findInPath("sbatch")), ["--parsable"] + arguments, environment: environment)
        try #require(result.status == 0, "sbatch \(arguments) failed:\n\(result.output)")
        let id = String(result.stdout.prefix { $0.isNumber })
        try #require(!id.isEmpty, "sbatch printed no job id: \(result.output)")
        return id
    }

    /// Polls squeue (finished jobs stay listed for MinJobAge) until every job and array task has ended.
    func waitForJobs(_ ids: [String], timeout: Double) throws -> [String: String] {
        let squeue = try #require(findInPath("squeue"))
        let ended: Set = [
            "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "BOOT_FAIL", "DEADLINE", "PREEMPTED",
        ]
        let deadline = Date().addingTimeInterval(timeout)
        var states: [String: String] = [:]
        while true {
            let listing = try run(
                squeue, ["-h", "-t", "all", "-j", ids.joined(separator: ","), "-o", "%i %T"],
                environment: testSlurmEnvironment)
            try #require(listing.status == 0, "squeue failed:\n\(listing.output)")
            states = [:]
            for line in listing.stdout.split(separator: "\n") {
                let fields = line.split(separator: " ")
                if fields.count == 2 { states[String(fields[0])] = String(fields[1]) }
            }
            let listed = ids.allSatisfy { id in states.keys.contains { $0 == id || $0.hasPrefix(id + "_") } }
            if listed && states.values.allSatisfy(ended.contains) { return states }
            if Date() > deadline {
                Issue.record("jobs still not finished after \(Int(timeout)) s: \(states)")
                return states
            }
            usleep(200_000)
        }
    }
}

/// A cluster of its own (state folder and ports), apart from one a developer may run on the defaults.
let testSlurmEnvironment = [
    "CAVPT_SLURM_DIR": "/tmp/cavpt-slurm-test",
    "CAVPT_SLURM_PORT": "6917",
    "CAVPT_SLURM_CPUS": "32",
    "SLURM_CONF": "/tmp/cavpt-slurm-test/slurm.conf",
]

/// Two test processes (e.g. two checkouts tested at once) would share the ports: one waits for the other.
struct SlurmLock {
    let descriptor: Int32
    init() throws {
        // Close-on-exec: the daemons the test starts must not inherit (and so hold) the lock.
        descriptor = open("/tmp/cavpt-slurm-test.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard descriptor >= 0, flock(descriptor, LOCK_EX) == 0 else {
            throw LaunchError("cannot lock /tmp/cavpt-slurm-test.lock (errno \(errno))")
        }
    }
    func release() { close(descriptor) }
}

// MARK: - mpirun through run-hostfile.sh

let mpirunAvailable = findInPath("mpirun") != nil

@Suite(.enabled(if: mpirunAvailable, "needs mpirun: apt-get install -y openmpi-bin libopenmpi-dev"))
struct HostfileTests {
    @Test func workstationFormStartsTheRanksAsked() throws {
        let result = try run(
            cluster("run-hostfile.sh"), ["-np", "3", "--mpirun-arg=--oversubscribe"],
            environment: ["CAVPT_DIST_BINARY": try checkExecutable().path, "CAVPT_DIST_COMMAND": "info"])
        #expect(result.status == 0, "\(result.output)")
        #expect(rankPrefixes(result.stdout) == (0..<3).map { "rank \($0)/3 local \($0)/3" }, "\(result.output)")
    }

    @Test func hostfileFormPlacesRanksPerNode() throws {
        let directory = try temporaryDirectory("hostfile")
        defer { try? FileManager.default.removeItem(at: directory) }
        let hostfile = directory.appendingPathComponent("hosts")
        try "# this machine only\nlocalhost slots=4\n".write(to: hostfile, atomically: true, encoding: .utf8)
        let result = try run(
            cluster("run-hostfile.sh"), ["--hostfile", hostfile.path, "--ppn", "3", "--threads", "1"],
            environment: ["CAVPT_DIST_BINARY": try checkExecutable().path, "CAVPT_DIST_COMMAND": "info"])
        #expect(result.status == 0, "\(result.output)")
        #expect(rankPrefixes(result.stdout) == (0..<3).map { "rank \($0)/3 local \($0)/3" }, "\(result.output)")
    }

    @Test func dryRunPrintsTheMpirunCommand() throws {
        let binary = "/opt/cavpt/cavpt-dist"
        let nodes = try run(
            cluster("run-hostfile.sh"),
            [
                "--hostfile", cluster("hostfile.example").path, "--ppn", "2", "--threads", "8", "--pin",
                "--dry-run", "configs/my run.yaml", "--set", "train.epochs=5",
            ],
            environment: [
                "CAVPT_DIST_BINARY": binary, "OPENBLAS_CORETYPE": "Haswell",
                "LD_LIBRARY_PATH": "", "CAVPT_DIST_NO_REEXEC": "",
            ])
        #expect(nodes.status == 0, "\(nodes.output)")
        #expect(
            nodes.stdout == "CAVPT_DIST_BLAS_THREADS=8 mpirun --hostfile \(cluster("hostfile.example").path) "
                + "--map-by ppr:2:node:PE=8 -x CAVPT_DIST_BLAS_THREADS -x OPENBLAS_CORETYPE -x PATH --bind-to core "
                + "\(binary) train --config 'configs/my run.yaml' --set train.epochs=5\n")

        let workstation = try run(
            cluster("run-hostfile.sh"), ["-np", "2", "--dry-run", "--", "--dataset", "dtd"],
            environment: ["CAVPT_DIST_BINARY": binary])
        #expect(
            workstation.stdout == "mpirun -np 2 --bind-to none \(binary) train --dataset dtd\n", "\(workstation.output)"
        )

        // --dry-run after the config and train options is still a dry run (it once launched mpirun).
        let late = try run(
            cluster("run-hostfile.sh"),
            [
                "--hostfile", cluster("hostfile.example").path, "--ppn", "4", "my-run.yaml", "--set", "train.epochs=50",
                "--dry-run",
            ],
            environment: [
                "CAVPT_DIST_BINARY": binary, "OPENBLAS_CORETYPE": "", "LD_LIBRARY_PATH": "", "CAVPT_DIST_NO_REEXEC": "",
            ])
        #expect(late.status == 0, "\(late.output)")
        #expect(
            late.stdout
                == "mpirun --hostfile \(cluster("hostfile.example").path) --map-by ppr:4:node -x PATH --bind-to none "
                + "\(binary) train --config my-run.yaml --set train.epochs=50\n", "\(late.output)")
    }

    func rankPrefixes(_ output: String) -> [String] {
        output.split(separator: "\n").filter { $0.hasPrefix("rank ") }
            .map { $0.split(separator: " ").prefix(4).joined(separator: " ") }
    }
}

// MARK: - Several nodes, on one machine

/// Two "nodes" in a hostfile, reached through an ssh stand-in that runs Open MPI's daemon here:
/// mpirun maps, launches and wires them as separate nodes, and with `btl tcp,self` the ranks of
/// different nodes really talk over TCP (loopback).
@Suite(.serialized) struct MultiNodeTests {
    func fakeCluster(_ directory: URL) throws -> (hostfile: String, environment: [String: String]) {
        let shim = directory.appendingPathComponent("rsh")
        try #"""
        #!/bin/sh
        # ssh stand-in: skip ssh options and the host name, run the command on this machine, each
        # "node's" daemon with a session folder of its own (the two would race for one otherwise).
        while [ $# -gt 0 ]; do case "$1" in -*) shift ;; *) break ;; esac; done
        host=$1; shift
        tmp="$(dirname "$0")/tmp-$host"; mkdir -p "$tmp"
        exec /bin/sh -c "$* -mca orte_tmpdir_base $tmp"
        """#.write(to: shim, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: shim.path)
        let hostfile = directory.appendingPathComponent("hosts")
        try "node-a slots=2\nnode-b slots=2\n".write(to: hostfile, atomically: true, encoding: .utf8)
        let environment = [
            "OMPI_MCA_plm_rsh_agent": shim.path, "OMPI_MCA_btl": "tcp,self", "OMPI_MCA_btl_tcp_if_include": "lo",
            "OMPI_MCA_oob_tcp_if_include": "lo", "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        ]
        return (hostfile.path, environment)
    }

    @Test func twoNodesOfTwoRanksTrainAsOneRankDoes() throws {
        let directory = try temporaryDirectory("multinode")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (hostfile, environment) = try fakeCluster(directory)
        let mpirun = try #require(findInPath("mpirun"))
        // Local ranks and BLAS threads are computed per node: two ranks on each of the two nodes.
        let info = try run(
            mpirun,
            [
                "--hostfile", hostfile, "-np", "4", "--map-by", "ppr:2:node", "--bind-to", "none",
                try checkExecutable().path, "info",
            ], environment: environment)
        try #require(info.status == 0, "\(info.output)")
        let ranks = info.stdout.split(separator: "\n").filter { $0.hasPrefix("rank ") }.map {
            $0.split(separator: " ").prefix(4).joined(separator: " ")
        }
        #expect(
            ranks == ["rank 0/4 local 0/2", "rank 1/4 local 1/2", "rank 2/4 local 0/2", "rank 3/4 local 1/2"],
            "\(info.output)")
        let nodeCPUs = ProcessInfo.processInfo.activeProcessorCount
        #expect(
            info.stdout.split(separator: "\n").filter { $0.hasPrefix("rank ") }.allSatisfy {
                $0.contains("blasThreads \(max(1, nodeCPUs / 2))")
            },
            "\(info.output)")

        let trainer = try demoData(in: directory, shots: 4, testPerClass: 2)
        func arguments(_ output: String) -> [String] {
            [
                "train", "--dataset", directory.path + "/data/synthetic.yaml", "--method", "vlp_cavpt", "--data-root",
                directory.path + "/data",
                "--model", directory.path + "/model", "--output", output, "--seed", "1", "--set", "train.epochs=2",
                "--set", "train.batchSize=8", "--set", "train.workers=1", "--set", "optim.visual.warmupEpochs=1",
            ]
        }
        let single = try run(
            URL(fileURLWithPath: trainer), arguments(directory.path + "/one"),
            environment: ["CAVPT_DIST_BLAS_THREADS": "1"])
        try #require(single.status == 0, "\(single.output)")
        // The same launch cluster/run-hostfile.sh makes (it prints it with --dry-run, then runs it).
        let script = cluster("run-hostfile.sh")
        let dry = try run(
            script,
            ["--hostfile", hostfile, "--ppn", "2", "--dry-run"] + Array(arguments(directory.path + "/two").dropFirst()),
            environment: environment.merging([
                "CAVPT_DIST_BINARY": trainer, "OPENBLAS_CORETYPE": "", "LD_LIBRARY_PATH": "",
                "CAVPT_DIST_NO_REEXEC": "",
            ]) { $1 })
        #expect(
            dry.stdout.hasPrefix(
                "mpirun --hostfile \(hostfile) --map-by ppr:2:node -x PATH --bind-to none \(trainer) train "),
            "\(dry.output)")
        let two = try run(
            script, ["--hostfile", hostfile, "--ppn", "2"] + Array(arguments(directory.path + "/two").dropFirst()),
            environment: environment.merging(["CAVPT_DIST_BINARY": trainer, "CAVPT_DIST_BLAS_THREADS": "1"]) { $1 })
        try #require(two.status == 0, "\(two.output)")
        #expect(two.stdout.contains("4 rank(s)"), "\(two.stdout)")
        let a = try checkpoint(directory.path + "/one"), b = try checkpoint(directory.path + "/two")
        #expect(!a.isEmpty && Set(a.keys) == Set(b.keys))
        for (name, values) in a {
            let other = b[name] ?? []
            let scale = values.map(abs).max() ?? 1
            let worst = zip(values, other).map { abs($0 - $1) }.max() ?? .infinity
            #expect(values.count == other.count && worst <= 1e-4 * max(scale, 1e-30), "\(name): \(worst)")
        }
    }

    /// A sweep over the two nodes: groups of 2 ranks, one per node. Open MPI offers no one-sided
    /// window over TCP at the thread level cavpt-dist asks for, so the jobs are dealt out in advance.
    @Test func aSweepRunsOverTwoNodes() throws {
        let directory = try temporaryDirectory("multinode-sweep")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (hostfile, environment) = try fakeCluster(directory)
        let trainer = try demoData(in: directory, shots: 4, testPerClass: 2)
        let r = try run(
            try #require(findInPath("mpirun")),
            [
                "--hostfile", hostfile, "-np", "4", "--map-by", "ppr:2:node", "--bind-to", "none", trainer, "sweep",
                "--datasets", directory.path + "/data/synthetic.yaml", "--methods", "vpt_deep,coop", "--seeds", "1",
                "--ranks-per-job", "2", "--data-root", directory.path + "/data", "--model", directory.path + "/model",
                "--output", directory.path + "/runs", "--set", "train.epochs=1", "--set", "train.batchSize=4",
                "--set", "train.workers=1",
            ], environment: environment.merging(["CAVPT_DIST_BLAS_THREADS": "1"]) { $1 })
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("sweep: 2 completed, 0 failed"), "\(r.output)")
    }

    /// Trained tensors of a run's last checkpoint, read from the safetensors file directly.
    func checkpoint(_ run: String) throws -> [String: [Float]] {
        let folder = run + "/checkpoints/epoch-0002/state.safetensors"
        let data = try Data(contentsOf: URL(fileURLWithPath: folder))
        let headerLength = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerLength))) as! [String: Any]
        var out: [String: [Float]] = [:]
        for (name, entry) in header where name != "__metadata__" && !name.hasPrefix("momentum.") {
            let offsets = (entry as! [String: Any])["data_offsets"] as! [Int]
            let bytes = data.subdata(in: (8 + headerLength + offsets[0])..<(8 + headerLength + offsets[1]))
            out[name] = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        return out
    }
}

// MARK: - sweep.sh (a launcher of cavpt-dist sweep)

@Suite struct SweepScriptTests {
    @Test func dryRunsPrintEachLaunch() throws {
        let binary = "/opt/cavpt/cavpt-dist"
        let environment = [
            "CAVPT_DIST_BINARY": binary, "OPENBLAS_CORETYPE": "", "LD_LIBRARY_PATH": "", "CAVPT_DIST_NO_REEXEC": "",
            "CAVPT_DIST_BLAS_THREADS": "",
        ]
        let args = [
            "--datasets", "eurosat,dtd", "--methods", "coop", "--ranks-per-job", "2", "--data-root", "/data/my dir",
        ]
        let local = try run(cluster("sweep.sh"), ["--np", "4", "--dry-run"] + args, environment: environment)
        #expect(local.status == 0, "\(local.output)")
        #expect(
            local.stdout
                == "mpirun -np 4 --bind-to none \(binary) sweep --datasets eurosat,dtd --methods coop "
                + "--ranks-per-job 2 "
                + "--data-root '/data/my dir'\n", "\(local.output)")
        let nodes = try run(
            cluster("sweep.sh"), ["--hostfile", cluster("hostfile.example").path, "--ppn", "8", "--dry-run"] + args,
            environment: environment)
        #expect(
            nodes.stdout
                == "mpirun --hostfile \(cluster("hostfile.example").path) --map-by ppr:8:node -x PATH --bind-to none "
                + "\(binary) sweep --datasets eurosat,dtd --methods coop --ranks-per-job 2 --data-root '/data/my "
                + "dir'\n",
            "\(nodes.output)")
        let slurm = try run(
            cluster("sweep.sh"), ["--slurm", "--sbatch-arg=--nodes=4", "--dry-run"] + args, environment: environment)
        #expect(
            slurm.stdout
                == "CAVPT_DIST_COMMAND=sweep CAVPT_DIST_BINARY=\(binary) sbatch --job-name=cavpt-sweep --nodes=4 "
                + "\(cluster("slurm.sbatch").path) --datasets eurosat,dtd --methods coop --ranks-per-job 2 "
                + "--data-root '/data/my dir'\n",
            "\(slurm.output)")
        let none = try run(cluster("sweep.sh"), ["--np", "2"], environment: environment)
        #expect(none.status == 2 && none.stderr.hasPrefix("sweep: error: give the sweep's arguments"), "\(none.output)")
    }

    @Test func aLocalSweepTrainsReportsAndSkipsWhatIsDone() throws {
        let directory = try temporaryDirectory("sweep-script")
        defer { try? FileManager.default.removeItem(at: directory) }
        let trainer = try demoData(in: directory, shots: 4, testPerClass: 2)
        let args = [
            "--np", "2", "--datasets", directory.path + "/data/synthetic.yaml", "--methods", "vpt_deep", "--seeds",
            "1,2",
            "--ranks-per-job", "1", "--data-root", directory.path + "/data", "--model", directory.path + "/model",
            "--output", directory.path + "/runs", "--set", "train.epochs=1", "--set", "train.batchSize=4", "--set",
            "train.workers=1",
        ]
        let environment = [
            "CAVPT_DIST_BINARY": trainer, "CAVPT_DIST_BLAS_THREADS": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1",
        ]
        let first = try run(cluster("sweep.sh"), args, environment: environment)
        #expect(first.status == 0, "\(first.output)")
        #expect(
            first.stdout.contains("sweep: 2 completed, 0 failed") && first.stdout.contains("| vpt_deep | 16 |"),
            "\(first.output)")
        let again = try run(cluster("sweep.sh"), args, environment: environment)
        #expect(
            again.status == 0 && again.stdout.contains("sweep: 0 completed, 0 failed, 2 already finished"),
            "\(again.output)")
    }
}

// MARK: - Helpers

let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func cluster(_ name: String) -> URL { packageRoot.appendingPathComponent("cluster").appendingPathComponent(name) }

/// The demo's tiny random CLIP and 4-class synthetic dataset in `directory` (model/, data/); returns
/// the cavpt-dist that wrote them.
func demoData(in directory: URL, shots: Int, testPerClass: Int) throws -> String {
    let trainer = try cavptDistExecutable().path
    let demo = try run(
        URL(fileURLWithPath: trainer),
        [
            "demo", "--dir", directory.path, "--prepare-only", "--classes", "4",
            "--shots", "\(shots)", "--test-per-class", "\(testPerClass)",
        ])
    try #require(demo.status == 0, "\(demo.output)")
    return trainer
}

/// `swift test` builds DistributedCheck next to the test bundle; fall back to the debug build folder.
func checkExecutable() throws -> URL {
    let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        .deletingLastPathComponent().appendingPathComponent("DistributedCheck")
    let candidates = [besideTests, packageRoot.appendingPathComponent(".build/debug/DistributedCheck")]
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        throw LaunchError(
            "DistributedCheck not found at \(candidates.map(\.path)); run `swift build --product DistributedCheck`")
    }
    return found
}

/// The trainer itself, built by `swift test` next to DistributedCheck.
func cavptDistExecutable() throws -> URL {
    let candidates = [
        try checkExecutable().deletingLastPathComponent().appendingPathComponent("cavpt-dist"),
        packageRoot.appendingPathComponent(".build/debug/cavpt-dist"),
    ]
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        throw LaunchError("cavpt-dist not found at \(candidates.map(\.path)); run `swift build`")
    }
    return found
}

func findInPath(_ name: String) -> URL? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    return path.split(separator: ":")
        .map { URL(fileURLWithPath: String($0)).appendingPathComponent(name) }
        .first { FileManager.default.isExecutableFile(atPath: $0.path) }
}

func temporaryDirectory(_ purpose: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(purpose)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func writeFile(_ directory: URL, _ path: String, _ text: String) throws {
    let url = directory.appendingPathComponent(path)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try text.write(to: url, atomically: true, encoding: .utf8)
}

struct LaunchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

struct Finished {
    var status: Int32
    var stdout: String
    var stderr: String
    var output: String { stdout + stderr }
}

/// Runs a command with output in files (no pipe can fill up), killing it after `timeout` seconds, which
/// only a hang reaches. Launcher variables of an enclosing MPI or Slurm job are removed: only the launcher
/// under test may make a process a rank or a job step; an empty value in `environment` unsets a variable.
/// posix_spawn and a waitpid poll rather than Foundation's Process: the scripts start daemons that outlive
/// them, and nothing here may depend on how SIGCHLD reaches this process.
func run(
    _ executable: URL, _ arguments: [String], environment: [String: String] = [:], directory: URL? = nil,
    timeout: Double = 60
) throws -> Finished {
    let outputDirectory = try temporaryDirectory("output")
    defer { try? FileManager.default.removeItem(at: outputDirectory) }
    let stdoutPath = outputDirectory.appendingPathComponent("stdout").path
    let stderrPath = outputDirectory.appendingPathComponent("stderr").path

    var command = [executable.path] + arguments
    if let directory { command = ["/bin/sh", "-c", #"cd "$0" && exec "$@""#, directory.path] + command }
    var variables = ProcessInfo.processInfo.environment.filter { key, _ in
        !["OMPI_", "PMIX_", "PMI_", "SLURM_", "CAVPT_"].contains { key.hasPrefix($0) }
    }
    variables.merge(environment) { $1 }
    let argv = command.map { strdup($0) } + [nil]
    let envp = variables.filter { !$0.value.isEmpty }.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for pointer in argv + envp { free(pointer) } }

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    // A test runs on a worker thread that blocks signals; the child (and the daemons it starts) must get
    // an empty mask and default handlers, or SIGTERM would not stop them.
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var noSignals = sigset_t(), allSignals = sigset_t()
    sigemptyset(&noSignals)
    sigfillset(&allSignals)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    posix_spawnattr_setsigdefault(&attributes, &allSignals)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, command[0], &actions, &attributes, argv, envp)
    guard spawned == 0 else { throw LaunchError("cannot start \(command[0]): \(String(cString: strerror(spawned)))") }

    let deadline = Date().addingTimeInterval(timeout)
    var status: Int32 = 0
    while waitpid(pid, &status, WNOHANG) == 0 {
        if Date() > deadline {
            kill(pid, SIGTERM)
            waitpid(pid, &status, 0)
            throw LaunchError(
                "\(executable.lastPathComponent) \(arguments.joined(separator: " ")) still ran after \(Int(timeout)) s")
        }
        usleep(20_000)
    }
    // The wait-status macros do not reach Swift: low 7 bits = terminating signal, next byte = exit code.
    let signal = status & 0x7f
    return Finished(
        status: signal == 0 ? (status >> 8) & 0xff : 128 + signal,
        stdout: String(decoding: FileManager.default.contents(atPath: stdoutPath) ?? Data(), as: UTF8.self),
        stderr: String(decoding: FileManager.default.contents(atPath: stderrPath) ?? Data(), as: UTF8.self))
}
