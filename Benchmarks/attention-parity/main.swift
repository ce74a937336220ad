import ParityKit

ParityCommand.main()
