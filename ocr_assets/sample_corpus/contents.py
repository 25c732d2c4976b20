"""What a catalog says: its departments, faculty, course entries and front matter, drawn from one seeded RNG."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from ocr_assets.keys import BookKey
from ocr_assets.sample_corpus.typeset import BODY_1COL, BODY_2COL, Item, Para
from ocr_assets.sample_corpus.vocabulary import (
    DAYS, DEPARTMENTS, Dept, INITIALS, MEN, MONTHS, NUMBER_WORDS, PROPER_SUBJECTS,
    RANK_ORDER, SECTIONS, SURNAMES, School, WOMEN,
)
from ocr_assets.schema import Course, Textbook


@dataclass(frozen=True)
class _Teacher:
    first: str
    initial: str
    surname: str
    rank: str  # "Professor", "Assistant Professor", "Instructor", "Teacher"
    degree: str
    title: str  # how the catalog names them in course entries: "Professor Smith", "Miss Porter"


@dataclass
class _BookStyle:
    size: tuple[int, int]
    columns: int
    body: int
    head_at_top: bool
    numbering: Literal["number", "abbrev", "course"]
    heading: Literal["department", "plain"]
    justify: bool
    margin: int


class BookContents:
    """One catalog's contents: its school, faculty, departments, course entries and front matter."""

    def __init__(self, key: BookKey, school: School, pages: int, seed: int, size: tuple[int, int]):
        self.key, self.school, self.pages = key, school, pages
        self.rng = random.Random(f"ocr_assets.sample_corpus:{seed}:{key}")
        self.year = key.year
        self.academic_year = f"{key.year}-{key.year + 1}"
        rng = self.rng
        w, _h = size
        columns = 2 if rng.random() < 0.35 else 1
        self.style = _BookStyle(
            size=size,
            columns=columns,
            body=max(14, round(w * (BODY_2COL if columns == 2 else BODY_1COL))),
            head_at_top=rng.random() < 0.8,
            numbering=rng.choice(("number", "number", "abbrev", "course")),
            heading=rng.choice(("department", "department", "plain")),
            justify=rng.random() < 0.5,
            margin=round(w * rng.uniform(0.075, 0.09)),
        )
        self.secondary = school.kind == "high_school"
        self.departments = self._choose_departments()
        self.faculty = self._choose_faculty()
        self.president = self._person(rank="President", women=False)

    # -- people and departments --------------------------------------------------------------

    def _choose_departments(self) -> list[Dept]:
        rng = self.rng
        kind = self.school.kind
        pool = []
        for dept in DEPARTMENTS:
            if self.secondary and sum(1 for c in dept.courses if c[1] == 0) < 2:
                continue
            if dept.engineering and kind not in ("university", "institute"):
                continue
            if kind == "institute" and dept.classics:
                continue
            if dept.name == "Education" and kind not in ("university", "normal"):
                continue
            pool.append(dept)
        count = max(min(6, len(pool)), round(len(pool) * rng.uniform(0.6, 1.0)))
        if self.secondary or self.pages >= 15:  # long catalogs list every department they have
            count = len(pool)
        return sorted(rng.sample(pool, count), key=lambda d: d.name)

    def _person(self, rank: str, women: bool) -> _Teacher:
        rng = self.rng
        surname = self._surnames.pop() if getattr(self, "_surnames", None) else rng.choice(SURNAMES)
        first = rng.choice(WOMEN if women else MEN)
        initial = rng.choice(INITIALS)
        if rank in ("President", "Professor"):
            degree = rng.choice(("A.M.", "Ph.D.", "A.M., Ph.D.", "LL.D."))
        else:
            degree = rng.choice(("A.B.", "A.M.", "S.B.", "Ph.D."))
        if self.secondary:
            title = f"{'Miss' if women else 'Mr.'} {surname}"
        elif rank == "Instructor":
            title = f"{'Miss' if women else rng.choice(('Mr.', 'Dr.'))} {surname}"
        else:
            title = f"{rank} {surname}"
        return _Teacher(first, initial, surname, rank, degree, title)

    def _choose_faculty(self) -> dict[str, list[_Teacher]]:
        rng = self.rng
        self._surnames = rng.sample(SURNAMES, len(SURNAMES))
        faculty: dict[str, list[_Teacher]] = {}
        for dept in self.departments:
            ranks = ["Teacher"] if self.secondary else ["Professor"]
            extra = rng.randint(0, 2)
            junior = ["Assistant Professor" if self.year >= 1895 else "Instructor", "Instructor"]
            if self.year >= 1905:
                junior.insert(0, "Associate Professor")
            ranks += ["Teacher"] * extra if self.secondary else sorted(
                rng.sample(junior, min(extra, len(junior))), key=RANK_ORDER.index)
            people = []
            for rank in ranks:
                women = self.school.women and rng.random() < 0.7 or self.secondary and rng.random() < 0.5
                if not self._surnames:
                    self._surnames = rng.sample(SURNAMES, len(SURNAMES))
                people.append(self._person(rank, women))
            faculty[dept.name] = people
        return faculty

    # -- course entries -----------------------------------------------------------------------

    def _term(self) -> str:
        rng = self.rng
        if self.secondary:
            return rng.choice(("Throughout the year", "First half-year", "Second half-year"))
        if self.year < 1905:
            return rng.choice(("Fall term", "Winter term", "Spring term", "Throughout the year"))
        return rng.choice(("First semester", "Second semester", "Throughout the year", "Either semester"))

    def _hours(self, lab: bool) -> str:
        rng = self.rng
        n = rng.choice(NUMBER_WORDS[1:5] if not self.secondary else NUMBER_WORDS[2:5])
        if self.secondary:
            return f"{n} periods a week."
        if lab and rng.random() < 0.5:
            return f"{n} hours; laboratory work {rng.choice(('two', 'three'))} afternoons a week."
        return rng.choice((f"{n} hours a week.", f"{n} hours.", f"{n} hours a week, with collateral reading."))

    def _description(self, dept: Dept, topics: tuple[str, ...], earlier: list[str]) -> tuple[str, list[str]]:
        rng = self.rng
        picked = list(topics) if rng.random() < 0.5 else rng.sample(list(topics), 2)
        if len(picked) == 3:
            listing = f"{picked[0]}, {picked[1]}, and {picked[2]}"
        else:
            listing = f"{picked[0]} and {picked[1]}"
        lead = rng.choice((
            f"A study of {listing}.",
            f"Lectures and recitations on {listing}.",
            f"The course treats {listing}.",
            f"Recitations, lectures, and exercises in {listing}.",
            f"An introduction to {listing}, with frequent written exercises.",
        ))
        sentences = [lead]
        who = rng.choice(
            ("Required of all pupils.", "Elective.") if self.secondary
            else ("Required of Freshmen.", "Open to Juniors and Seniors.", "Elective for Sophomores.")
        )
        extras = [who, "Given in alternate years.", "Lectures, with collateral reading and reports."]
        if earlier:
            extras.append(rng.choice((f"Prerequisite: Course {rng.choice(earlier)}.",
                                      f"Open to students who have completed Course {earlier[-1]}.")))
        if dept.lab:
            extras.append(f"Laboratory fee, ${rng.choice(('2', '3', '5', '8'))}.")
        if dept.name == "English":
            extras.append("Weekly themes are required.")
        for sentence in rng.sample(extras, rng.randint(0, 2)):
            sentences.append(sentence)
        return " ".join(sentences), picked

    def _course_items(self, dept: Dept, cycle: int) -> Iterator[Item]:
        """The items of one department: heading (kept with its first course), then courses."""
        rng = self.rng
        s = self.style
        body = s.body
        people = self.faculty[dept.name]
        if self.secondary:  # a long high-school catalog's later sections reach college-level subjects
            tiers: tuple[int, ...] = (0,) if cycle == 0 else (0, 1)
        else:
            tiers = (0, 1) if self.school.kind in ("college", "normal") else (0, 1, 2)
        pool = [c for c in dept.courses if c[1] in tiers]
        if self.secondary and cycle == 0:
            chosen = pool
        else:
            chosen = [c for c in pool if rng.random() < 0.75] or pool[:2]
        prep_letter = (not self.secondary and self.year < 1905 and self.school.kind in ("college", "university")
                       and chosen and chosen[0][1] == 0 and rng.random() < 0.4)
        heading = (f"DEPARTMENT OF {dept.name.upper()}" if s.heading == "department" else dept.name.upper())
        section, title_prefix, label_prefix = (
            SECTIONS[cycle] if cycle < len(SECTIONS) else ("ADDITIONAL COURSES", "", f"X{cycle}-"))
        if section:
            heading = f"{heading} ({section})"
        head_paras = [Para(heading, "bold", body + 3, "center", space_before=round(body * 0.8),
                            space_after=round(body * 0.3))]
        head_paras.append(Para("; ".join(p.title for p in people) + ".", "italic", body - 1, "center",
                                space_after=round(body * 0.4)))
        subject = dept.name if dept.name in PROPER_SUBJECTS else dept.name.lower()
        if rng.random() < 0.4 and not cycle:
            head_paras.append(Para(
                rng.choice((
                    f"The courses in {subject} are arranged to meet the needs both of students "
                    "who take the subject as part of a general education and of those who intend to pursue it further.",
                    f"Students who intend to make {subject} their principal subject should consult "
                    "the head of the department at the beginning of the year.",
                    "The elementary courses are prerequisite to all others in the department.",
                )), "regular", body, s.justify and "justify" or "left", indent=round(body * 1.2),
                space_after=round(body * 0.3)))
        number = 0
        earlier: list[str] = []
        graduate_noted = False
        first = True
        for index, (title, tier, topics) in enumerate(chosen):
            paras: list[Para] = []
            if index == 0 and prep_letter:
                label, level = "A", "preparatory"
            elif tier == 2 and self.school.kind in ("university", "institute"):
                number = max(number + rng.randint(1, 3), 101) if number < 101 else number + rng.randint(1, 2)
                label, level = str(number), "graduate"
                if not graduate_noted:
                    paras.append(Para("Courses primarily for Graduates", "italic", body, "center",
                                       space_before=round(body * 0.5)))
                    graduate_noted = True
            else:
                number += rng.choice((1, 1, 1, 2))
                label = str(number)
                level = "secondary" if self.secondary else "undergraduate"
            if cycle == 1 and label.isdigit():
                label = str(int(label) + 100)
            label = f"{label_prefix}{label}"
            course_title = title if title.startswith(title_prefix) else f"{title_prefix}{title}"
            if s.numbering == "abbrev":
                header = f"{dept.abbrev} {label}. {course_title}."
            elif s.numbering == "course":
                header = f"Course {label}. {course_title}."
            else:
                header = f"{label}. {course_title}."
            teachers = [rng.choice(people)]
            if len(people) > 1 and rng.random() < 0.2:
                teachers = rng.sample(people, 2)
            term = self._term()
            hours = self._hours(dept.lab)
            description, picked = self._description(dept, topics, earlier)
            who = " and ".join(t.title for t in teachers)
            body_text = f"{hours} {term}. {who}. {description}"
            texts = rng.sample(list(dept.texts), 1 if rng.random() < 0.75 else 2)
            if rng.random() < 0.15:
                texts = []
            paras.append(Para(header, "bold", body, "left", space_before=round(body * 0.55)))
            paras.append(Para(body_text, "regular", body, "justify" if s.justify else "left",
                               indent=round(body * 1.2)))
            if texts:
                label_word = "Text" if len(texts) == 1 else "Texts"
                line = f"{label_word}: " + "; ".join(f"{a}, {t}" for a, t in texts) + "."
                paras.append(Para(line, "italic", body, "left", indent=round(body * 1.2)))
            course = Course(
                course_name=course_title,
                department=dept.name,
                level=level,
                topics=picked,
                textbooks=[Textbook(title=t, author=a) for a, t in texts],
                term=term,
                instructors=[t.title for t in teachers],
                description=description,
            )
            earlier.append(label)
            if first:
                yield Item(head_paras + paras, course=course, dept_start=heading)
                first = False
            else:
                yield Item(paras, course=course)

    def _all_course_items(self) -> Iterator[Item]:
        cycle = 0
        while True:  # a very long book runs out of vocabulary: start an "advanced" pass
            for dept in self.departments:
                yield from self._course_items(dept, cycle)
            cycle += 1


    def _toc_items(self, sections: list[tuple[str, int]]) -> Iterator[Item]:
        body = self.style.body
        for name, number in sections:
            yield Item([Para(name, "regular", body, "left", space_after=round(body * 0.25), right=str(number))])

    def _calendar_items(self) -> Iterator[Item]:
        rng = self.rng
        body = self.style.body
        semesters = self.year >= 1905
        events = [
            (date(self.year, 9, rng.randint(8, 15)), "Entrance examinations begin."),
            (None, "First semester begins." if semesters else "Fall term begins."),
            (date(self.year, 11, 1), "Founders' Day; a holiday."),
            (self._thanksgiving(self.year), "Thanksgiving Day; a holiday."),
            (date(self.year, 12, rng.randint(18, 22)), "Christmas recess begins."),
            (date(self.year + 1, 1, rng.randint(3, 6)), "Exercises resumed."),
            (date(self.year + 1, 2, rng.randint(1, 6)),
             "Second semester begins." if semesters else "Winter term ends."),
            (date(self.year + 1, 2, 22), "Washington's Birthday; a holiday."),
            (date(self.year + 1, 4, rng.randint(1, 10)), "Spring recess begins."),
            (date(self.year + 1, 5, 30), "Memorial Day; a holiday."),
            (date(self.year + 1, 6, rng.randint(14, 22)), "Commencement."),
        ]
        start = events[0][0]
        assert start is not None
        events[1] = (start + timedelta(days=2), events[1][1])
        current_year = None
        for day, what in events:
            assert day is not None
            if day.year != current_year:
                current_year = day.year
                yield Item([Para(str(day.year), "bold", body, "center", space_before=round(body * 0.6),
                                   space_after=round(body * 0.2))])
            text = f"{MONTHS[day.month - 1]} {day.day}, {DAYS[day.weekday()]}. {what}"
            yield Item([Para(text, "regular", body, "left", space_after=round(body * 0.2))])

    @staticmethod
    def _thanksgiving(year: int) -> date:
        first = date(year, 11, 1)
        first_thursday = first + timedelta(days=(3 - first.weekday()) % 7)
        return first_thursday + timedelta(days=21)

    def _faculty_items(self) -> Iterator[Item]:
        body = self.style.body
        p = self.president
        yield Item([Para(f"{p.first.upper()} {p.initial}. {p.surname.upper()}, {p.degree}, President.",
                           "regular", body, "left", space_after=round(body * 0.35))])
        for dept in self.departments:
            for t in self.faculty[dept.name]:
                if self.secondary:
                    role = f"Teacher of {dept.name}"
                else:
                    role = f"{t.rank} of {dept.name}"
                text = f"{t.first.upper()} {t.initial}. {t.surname.upper()}, {t.degree}, {role}."
                yield Item([Para(text, "regular", body, "left", space_after=round(body * 0.35))])

    def _admission_items(self) -> Iterator[Item]:
        rng = self.rng
        body = self.style.body
        name = self.school.name
        age = 14 if self.secondary else 16
        klass = "the first-year class" if self.secondary else "the Freshman class"
        paragraphs = [
            f"Candidates for admission to {klass} must be at least {_spell(age)} years of age, and must "
            "present satisfactory testimonials of good moral character.",
            "Candidates may be admitted either by examination or by certificate from an approved school. "
            "Examinations are held at the beginning of the year, in the week before the opening of the "
            "term, and in June at the close of the year.",
            "The subjects required for admission are English, Mathematics, History, and one foreign "
            "language, together with such elective subjects as will make up the full number of units.",
            f"Students from other institutions of collegiate rank may be admitted to advanced standing in "
            f"{name} upon presentation of a certificate of honorable dismissal and a full statement of the "
            "work already done.",
            "Persons of mature age who do not seek a degree may be admitted as special students, to pursue "
            "such courses as they are found qualified to take.",
            "All students are required to register at the office of the Registrar within the first three "
            "days of each term. A fee of one dollar is charged for late registration.",
            "The charge for tuition is payable in advance at the beginning of each term. No deduction is "
            "made for absence except in cases of protracted illness.",
        ]
        heads = {0: "Age and Character", 1: "Methods of Admission", 2: "Subjects Required",
                 3: "Advanced Standing", 4: "Special Students", 5: "Registration", 6: "Tuition"}
        for i, text in enumerate(paragraphs):
            paras = []
            if rng.random() < 0.5:
                paras.append(Para(heads[i], "italic", body, "left", space_before=round(body * 0.4)))
            paras.append(Para(text, "regular", body, "justify" if self.style.justify else "left",
                               indent=round(body * 1.2), space_after=round(body * 0.4)))
            yield Item(paras)

    def _index_items(self, entries: list[tuple[str, list[int]]]) -> Iterator[Item]:
        size = max(12, self.style.body - 2)
        for name, pages in entries:
            text = f"{name}, {', '.join(str(p) for p in pages)}"
            yield Item([Para(text, "regular", size, "left", space_after=round(size * 0.15))])


def _spell(n: int) -> str:
    return {14: "fourteen", 15: "fifteen", 16: "sixteen"}.get(n, str(n))
