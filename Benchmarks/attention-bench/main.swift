import BenchmarkKit

AttentionBenchCommand.main()
