"""The parts of `rpea build` (dataset.builder runs them): the options (`options`), the split of
sessions (`planning`), one sequence file (`sequence`), its images and labels (`images`, `labels`,
made in worker processes while the events stream)."""
