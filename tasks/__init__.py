"""toto_eval.tasks"""
