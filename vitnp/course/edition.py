"""Which edition this copy of vitnp is: the instructor's (with the model solutions) or a student's.

``python -m vitnp course build`` writes this file again in the student edition with ``STUDENT = True``.  The grader
reads it: in a student edition its "reference" is the student's own code, so it refuses to grade the exercises whose
answers it would have to compute with that code (the forwards and the loss), instead of comparing them with
themselves; the backwards it still grades, against centred differences of the given forwards.
"""
STUDENT = False
