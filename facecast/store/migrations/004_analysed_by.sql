-- clip_analyses.analysed_by: who asked for each analysis (a signed-in user, the local app user, or cli:<login>)
ALTER TABLE clip_analyses ADD COLUMN analysed_by VARCHAR;
