from agent_orchestrator.cli.main import main

main()
