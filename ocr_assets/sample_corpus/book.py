"""How a catalog is laid out: the page plan, running heads, columns and each page's placed text."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ocr_assets.sample_corpus.contents import BookContents
from ocr_assets.sample_corpus.typeset import Flow, Item, Para, Placed, line_height, line_width, vertical_extent
from ocr_assets.sample_corpus.vocabulary import STATE_NAMES
from ocr_assets.schema import Course


@dataclass
class PageLayout:
    page: int
    content_type: str
    blocks: list[Placed]
    rules: list[tuple[float, float, float, float, int]]  # x0, y0, x1, y1, width
    courses: list[Course]
    layout_description: str


@dataclass
class _Frame:
    head: list[Placed]
    rules: list[tuple[float, float, float, float, int]]
    top: float
    bottom: float
    foot: list[Placed]


class Book(BookContents):
    """One catalog laid out page by page (its contents come from `BookContents`)."""

    # -- page plan ------------------------------------------------------------------------------

    def content_types(self) -> list[str]:
        rng = self.rng
        n = self.pages
        types: list[str] = []
        if n >= 3 and rng.random() < 0.85:
            types.append("title_page")
        front_pool = ["table_of_contents", "calendar", "faculty", "admission"]
        if n <= 3:
            fronts = 0
        elif n <= 6:
            fronts = rng.choice((0, 1, 1))
        else:
            fronts = rng.randint(1, min(4, n // 6 + 1))
        sampled = set(rng.sample(front_pool, fronts))
        chosen = [f for f in front_pool if f in sampled]
        types += chosen
        index_page = n >= 10 and rng.random() < 0.5
        remaining = n - len(types) - (1 if index_page else 0)
        types += ["course_listing"] * remaining
        if index_page:
            types.append("index")
        return types[:n]

    # -- page geometry --------------------------------------------------------------------------

    def _frame(self, page: int) -> _Frame:
        """Running head (or a short head and a page number at the foot) for a non-title page."""
        w, h = self.style.size
        m = self.style.margin
        size = max(12, round(self.style.body * 0.9))
        title = self.school.name.upper()
        y = round(h * 0.045)
        top, bottom = vertical_extent("regular", size)
        nw = line_width("regular", size, [str(page)])
        if self.style.head_at_top:
            tw = line_width("regular", size, title.split())
            tx = (w - tw) / 2
            title_block = Placed(title, "regular", size, [(title.split(), tx, y, None)],
                                  (tx, y + top, tx + tw, y + bottom))
            nx = m if page % 2 == 0 else w - m - nw
            num = Placed(str(page), "regular", size, [([str(page)], nx, y, None)], (nx, y + top, nx + nw, y + bottom))
            rule_y = y + line_height(size) + 6
            return _Frame(head=[num, title_block] if page % 2 == 0 else [title_block, num],
                          rules=[(m, rule_y, w - m, rule_y, 2)],
                          top=rule_y + round(self.style.body * 0.6), bottom=h - round(h * 0.05), foot=[])
        tw = line_width("italic", size, title.split())
        t_top, t_bottom = vertical_extent("italic", size)
        head = Placed(title, "italic", size, [(title.split(), (w - tw) / 2, y, None)],
                       ((w - tw) / 2, y + t_top, (w + tw) / 2, y + t_bottom))
        fy = h - round(h * 0.05)
        foot = Placed(str(page), "regular", size, [([str(page)], (w - nw) / 2, fy, None)],
                       ((w - nw) / 2, fy + top, (w + nw) / 2, fy + bottom))
        return _Frame(head=[head], rules=[], top=y + line_height(size) + round(self.style.body * 0.9),
                      bottom=fy - 10, foot=[foot])

    def _body_flow(self, page: int, columns: int | None = None) -> tuple[Flow, _Frame]:
        w, _h = self.style.size
        m = self.style.margin
        frame = self._frame(page)
        if (columns or self.style.columns) == 2:
            gap = round(w * 0.05)
            col_w = (w - 2 * m - gap) / 2
            spans = [(m, m + col_w), (m + col_w + gap, w - m)]
            if self.rng.random() < 0.5:  # some printers set a rule between the columns
                mid = m + col_w + gap / 2
                frame.rules.append((mid, frame.top, mid, frame.bottom - 10, 1))
        else:
            spans = [(m, w - m)]
        flow = Flow(spans, frame.top, frame.bottom)
        flow.blocks.extend(frame.head)
        return flow, frame

    # -- page kinds -----------------------------------------------------------------------------

    def _title_page(self, page: int) -> PageLayout:
        rng = self.rng
        w, h = self.style.size
        m = self.style.margin
        base = max(14, round(w * 0.026))
        state = STATE_NAMES.get(self.key.state, self.key.state)
        kind_word = {"university": "University", "college": "College", "institute": "Institute",
                     "high_school": "School", "normal": "School"}[self.school.kind]
        flow = Flow([(m + base, w - m - base)], round(h * 0.13), h - round(h * 0.06))
        heading = rng.choice(("ANNUAL CATALOGUE", "CATALOGUE", "ANNUAL REGISTER", "THE CATALOGUE"))
        paras = [
            Para(heading, "regular", round(base * 1.25), "center"),
            Para("OF THE", "italic", base, "center", space_before=round(base * 0.8)),
            Para(self.school.name.upper(), "bold", round(base * 1.6), "center", space_before=round(base * 0.8)),
            Para("Catalogue of Courses", "italic", round(base * 1.1), "center", space_before=round(base * 1.5)),
            Para(f"for the Academic Year {self.academic_year}", "regular", base, "center",
                  space_before=round(base * 0.4)),
        ]
        if rng.random() < 0.6:
            paras.append(Para(f"with Announcements for {self.year + 1}-{self.year + 2}", "italic",
                               round(base * 0.9), "center", space_before=round(base * 0.4)))
        paras.append(Para(f"{self.school.city.upper()}, {state.upper()}", "regular", base, "center",
                           space_before=round(base * 6)))
        paras.append(Para(rng.choice((f"Published by the {kind_word}", f"Printed for the {kind_word}",
                                       "Press of the Board of Trustees")), "italic", base, "center",
                           space_before=round(base * 0.5)))
        paras.append(Para(str(self.year), "regular", base, "center", space_before=round(base * 0.5)))
        for para in paras:
            flow.place(Item([para]))
        rule_y = flow.blocks[2].bbox[1] - round(base * 0.6) if len(flow.blocks) > 2 else h * 0.25
        rules = [(w * 0.35, rule_y, w * 0.65, rule_y, 2)]
        return PageLayout(page, "title_page", flow.blocks, rules, [],
                           "Title page: centered lines in several sizes, no running head.")

    def _filled_page(self, page: int, content_type: str, title: str, items: Iterator[Item],
                     columns: int = 1, description: str = "") -> PageLayout:
        flow, frame = self._body_flow(page, columns)
        body = self.style.body
        flow.place(Item([Para(title, "bold", body + 4, "center", space_after=round(body * 0.6))]))
        for item in items:
            if not flow.place(item):
                break
        return PageLayout(page, content_type, flow.blocks + frame.foot, frame.rules, [], description)


    # -- the whole book -----------------------------------------------------------------------

    def layout(self) -> list[PageLayout]:
        types = self.content_types()
        layouts: dict[int, PageLayout] = {}
        course_items = self._all_course_items()
        pending: Item | None = None
        dept_pages: dict[str, int] = {}
        course_pages: dict[str, list[int]] = {}
        first_course_page = next((i + 1 for i, t in enumerate(types) if t == "course_listing"), None)
        # Course pages first (their page numbers feed the contents and the index).
        for page, kind in enumerate(types, start=1):
            if kind != "course_listing":
                continue
            flow, frame = self._body_flow(page)
            placed: list[Course] = []
            while True:
                item = pending if pending is not None else next(course_items)
                pending = None
                was_empty = flow.col == 0 and flow.y == flow.top
                if not flow.place(item):
                    if was_empty:
                        continue  # taller than a whole page (tiny page sizes): leave it out
                    pending = item
                    break
                if item.course is not None:
                    placed.append(item.course)
                    course_pages.setdefault(item.course.course_name, []).append(page)
                if item.dept_start is not None:
                    dept_pages.setdefault(item.dept_start, page)
            cols = "two columns" if len(flow.columns) == 2 else "a single column"
            head = "a running head with the page number" if self.style.head_at_top else "the page number at the foot"
            layouts[page] = PageLayout(page, "course_listing", flow.blocks + frame.foot, frame.rules, placed,
                                        f"Course listing in {cols}, with {head}.")
        for page, kind in enumerate(types, start=1):
            if kind == "title_page":
                layouts[page] = self._title_page(page)
            elif kind == "table_of_contents":
                layouts[page] = self._filled_page(
                    page, "table_of_contents", "CONTENTS",
                    self._toc_items(self._contents(types, dept_pages, first_course_page)),
                    description="Table of contents: section names with page numbers flush right.")
            elif kind == "calendar":
                layouts[page] = self._filled_page(page, "front_matter", "CALENDAR", self._calendar_items(),
                                                  description="Front matter: the academic calendar.")
            elif kind == "faculty":
                layouts[page] = self._filled_page(page, "front_matter", "OFFICERS OF INSTRUCTION",
                                                  self._faculty_items(),
                                                  description="Front matter: list of officers of instruction.")
            elif kind == "admission":
                layouts[page] = self._filled_page(page, "front_matter", "ADMISSION", self._admission_items(),
                                                  description="Front matter: requirements for admission.")
            elif kind == "index":
                entries = sorted(course_pages.items())
                layouts[page] = self._filled_page(page, "index", "INDEX", self._index_items(entries), columns=2,
                                                  description="Index in two columns: subjects with page numbers.")
        return [layouts[p] for p in range(1, len(types) + 1)]

    def _contents(
        self, types: list[str], dept_pages: dict[str, int], first_course_page: int | None
    ) -> list[tuple[str, int]]:
        names = {"calendar": "Calendar", "faculty": "Officers of Instruction", "admission": "Admission"}
        sections: list[tuple[str, int]] = []
        for page, kind in enumerate(types, start=1):
            if kind in names:
                sections.append((names[kind], page))
        last = first_course_page or len(types) + 1
        sections.append(("Courses of Instruction", last))
        for dept in self.departments:
            heading = (f"DEPARTMENT OF {dept.name.upper()}" if self.style.heading == "department"
                       else dept.name.upper())
            page = dept_pages.get(heading)
            if page is None:
                page = last + self.rng.randint(1, 3)
            last = max(last, page)
            sections.append((f"Department of {dept.name}" if self.style.heading == "department" else dept.name, page))
        if "index" in types:
            sections.append(("Index", len(types)))
        return sections
