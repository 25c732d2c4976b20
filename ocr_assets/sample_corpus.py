"""A synthetic corpus of historical course-catalog scans, with allow-lists and ground truth.

`generate_corpus` renders catalog pages (title page, front matter, course listings in one or
two columns, an index) with Pillow and writes the three trees the platform reads:

```
out/images/{state}/{school}/{year}/{page}.jpg           the page scans (every page)
out/allow_list/{state}/{school}/{year}/{page}.json      first-pass labels (some pages left out)
out/ground_truth/{state}/{school}/{year}/{page}.json    the truth as an `OcrPageResult`
```

The ground truth's text blocks are exactly the strings drawn (a paragraph's wrapped lines
joined by newlines), in reading order, with pixel boxes in the final (skewed) image. Courses
flow across pages the way a printed catalog's do: a page may open in the middle of a department
whose heading is on an earlier page, which is what the pipeline's page-to-page context is for.

Everything is deterministic for a seed: one `random.Random` per book, seeded from the seed and
the book key, and fixed encoder settings, so a run writes the same bytes every time (on the
same fonts) whatever the number of worker processes.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Literal

from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageOps
from pydantic import BaseModel, ConfigDict

from ocr_assets.keys import BookKey, check_name_part
from ocr_assets.schema import Course, OcrPageResult, PageInfo, RawOcr, TextBlock, Textbook

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_STATES",
    "JPEG_QUALITY",
    "CorpusSummary",
    "ImageMode",
    "generate_corpus",
]

DEFAULT_STATES: tuple[str, ...] = ("CA", "NY", "MA", "IL")
DEFAULT_PAGE_SIZE: tuple[int, int] = (1000, 1400)
JPEG_QUALITY = 60  # measured: RapidOCR reads q60 as well as q80 here, at ~27% fewer bytes
_TILE_PAD = 128
# Body type size as a fraction of page width, and line pitch as a multiple of the type size.
_BODY_1COL, _BODY_2COL, _LEADING = 0.023, 0.021, 1.3
_WORD_SPACE = 1.5
YEAR_RANGE = (1880, 1935)

ImageMode = Literal["render", "blank"]
_FORMATS = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "tif": "tif", "tiff": "tif"}


class CorpusSummary(BaseModel):
    """What `generate_corpus` wrote."""

    model_config = ConfigDict(frozen=True)

    out: Path
    books: list[str]
    pages_per_book: int
    pages: int
    allow_listed: int
    courses: int
    allow_listed_courses: int
    image_format: str
    images: str

    @property
    def images_root(self) -> Path:
        return self.out / "images"

    @property
    def allow_list_root(self) -> Path:
        return self.out / "allow_list"

    @property
    def ground_truth_root(self) -> Path:
        return self.out / "ground_truth"


# --------------------------------------------------------------------------------------------
# Vocabulary (1880–1935)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dept:
    name: str
    abbrev: str
    # (title, tier, topics): tier 0 elementary (also taught in high schools), 1 college, 2 advanced.
    courses: tuple[tuple[str, int, tuple[str, ...]], ...]
    texts: tuple[tuple[str, str], ...]  # (author, title)
    lab: bool = False
    engineering: bool = False
    classics: bool = False


_DEPARTMENTS: tuple[_Dept, ...] = (
    _Dept("Astronomy", "Astr.", (
        ("Descriptive Astronomy", 0, ("the solar system", "the motions of the moon", "eclipses")),
        ("General Astronomy", 1, ("celestial mechanics", "the sun and planets", "stellar spectra")),
        ("Practical Astronomy", 1, ("the transit instrument", "the determination of time", "latitude and longitude")),
        ("Theoretical Astronomy", 2, ("the orbits of planets and comets", "perturbations", "the method of least squares")),
    ), (("Young", "General Astronomy"), ("Newcomb", "Popular Astronomy"), ("Todd", "New Astronomy"),
        ("Campbell", "Practical Astronomy"), ("Watson", "Theoretical Astronomy")), lab=True),
    _Dept("Botany", "Bot.", (
        ("General Botany", 0, ("the structure of seed plants", "the cell", "the elements of plant physiology")),
        ("Structural Botany", 1, ("the histology of the higher plants", "the use of the microscope", "vegetable tissues")),
        ("Cryptogamic Botany", 1, ("the algae", "the fungi", "the mosses and ferns")),
        ("Plant Physiology", 1, ("nutrition", "growth", "irritability")),
        ("Systematic Botany", 1, ("the classification of flowering plants", "field work", "the herbarium")),
        ("Plant Ecology", 2, ("plant societies", "geographical distribution", "adaptation to environment")),
    ), (("Gray", "Manual of Botany"), ("Bessey", "Botany for High Schools and Colleges"),
        ("Strasburger", "A Text-Book of Botany"), ("Coulter", "Plant Relations"),
        ("Atkinson", "College Text-Book of Botany")), lab=True),
    _Dept("Chemistry", "Chem.", (
        ("General Chemistry", 0, ("the non-metallic elements", "the laws of chemical combination", "the atomic theory")),
        ("Qualitative Analysis", 1, ("the separation of the metals", "the analysis of unknown substances", "chemical equations")),
        ("Quantitative Analysis", 1, ("gravimetric methods", "volumetric methods", "the analysis of ores")),
        ("Organic Chemistry", 1, ("the compounds of carbon", "the aliphatic series", "the aromatic series")),
        ("Industrial Chemistry", 1, ("the manufacture of acids and alkalies", "fuels", "metallurgical processes")),
        ("Physical Chemistry", 2, ("solutions", "chemical equilibrium", "electrochemistry")),
    ), (("Remsen", "Inorganic Chemistry"), ("Noyes", "Qualitative Chemical Analysis"),
        ("Talbot", "Quantitative Chemical Analysis"), ("Holleman", "A Text-Book of Organic Chemistry"),
        ("Smith", "General Chemistry for Colleges"), ("Walker", "Introduction to Physical Chemistry")), lab=True),
    _Dept("Civil Engineering", "C.E.", (
        ("Plane Surveying", 1, ("the compass and transit", "leveling", "land surveying")),
        ("Railroad Engineering", 1, ("the location of lines", "curves and earthwork", "track construction")),
        ("Hydraulics", 1, ("the flow of water in pipes", "weirs and orifices", "water power")),
        ("Masonry Construction", 1, ("stone and brick", "cements and mortars", "foundations")),
        ("Bridge Design", 2, ("stresses in trusses", "roof trusses", "plate girders")),
        ("Sanitary Engineering", 2, ("water supply", "sewerage", "the purification of water")),
    ), (("Johnson", "Theory and Practice of Surveying"), ("Searles", "Field Engineering"),
        ("Merriman", "Treatise on Hydraulics"), ("Baker", "Treatise on Masonry Construction"),
        ("Trautwine", "Civil Engineer's Pocket-Book")), engineering=True),
    _Dept("Education", "Educ.", (
        ("Principles of Teaching", 1, ("the recitation", "the course of study", "school management")),
        ("History of Education", 1, ("Greek and Roman education", "the Renaissance", "modern school systems")),
        ("Educational Psychology", 1, ("attention", "memory", "the formation of habits")),
        ("Methods in Secondary Instruction", 1, ("the teaching of English", "the teaching of history", "observation of classes")),
        ("School Administration", 2, ("the school board", "the superintendent", "school finance")),
    ), (("Painter", "History of Education"), ("Thorndike", "Principles of Teaching"),
        ("Rosenkranz", "Philosophy of Education"), ("Page", "Theory and Practice of Teaching"),
        ("Dutton", "School Management"))),
    _Dept("English", "Eng.", (
        ("Rhetoric and English Composition", 0, ("the paragraph", "the sentence", "argumentation")),
        ("English Literature", 0, ("Chaucer", "Shakespeare", "Milton")),
        ("American Literature", 0, ("Irving", "Hawthorne", "Emerson")),
        ("Advanced Composition", 1, ("the essay", "description and narration", "weekly themes")),
        ("Shakespeare", 1, ("the tragedies", "the historical plays", "textual criticism")),
        ("The English Drama", 1, ("the miracle plays", "the Elizabethan stage", "the Restoration")),
        ("The English Novel", 1, ("Richardson", "Fielding", "Scott")),
        ("Anglo-Saxon", 2, ("grammar", "the reading of prose texts", "Beowulf")),
    ), (("Genung", "Practical Elements of Rhetoric"), ("Hill", "Principles of Rhetoric"),
        ("Wendell", "English Composition"), ("Bright", "Anglo-Saxon Reader"),
        ("Pancoast", "Introduction to English Literature"), ("Dowden", "Shakspere Primer"))),
    _Dept("French", "Fr.", (
        ("Elementary French", 0, ("grammar", "pronunciation", "the reading of easy prose")),
        ("Intermediate French", 0, ("composition", "modern prose", "conversation")),
        ("French Literature of the Seventeenth Century", 1, ("Corneille", "Racine", "La Fontaine")),
        ("The French Novel", 1, ("Balzac", "Hugo", "Flaubert")),
        ("Old French", 2, ("phonology", "the Chanson de Roland", "the dialects")),
    ), (("Fraser and Squair", "French Grammar"), ("Chardenal", "Complete French Course"),
        ("Whitney", "Practical French Grammar"), ("Super", "Readings from French History"))),
    _Dept("Geology", "Geol.", (
        ("Physical Geography", 0, ("the atmosphere", "rivers and valleys", "glaciers")),
        ("General Geology", 1, ("dynamical geology", "structural geology", "historical geology")),
        ("Mineralogy", 1, ("crystallography", "blowpipe analysis", "determinative mineralogy")),
        ("Economic Geology", 1, ("ore deposits", "coal and petroleum", "building stones")),
        ("Paleontology", 2, ("the invertebrate fossils", "the succession of life", "field collecting")),
    ), (("Dana", "Manual of Geology"), ("LeConte", "Elements of Geology"),
        ("Chamberlin and Salisbury", "College Geology"), ("Dana", "Manual of Mineralogy"),
        ("Davis", "Physical Geography")), lab=True),
    _Dept("German", "Ger.", (
        ("Elementary German", 0, ("grammar", "pronunciation", "the reading of easy prose")),
        ("Intermediate German", 0, ("composition", "Schiller", "Lessing")),
        ("Scientific German", 1, ("the reading of scientific texts", "technical vocabulary", "translation")),
        ("German Literature of the Classical Period", 1, ("Klopstock", "Lessing", "Herder")),
        ("Goethe's Faust", 1, ("the first part", "the second part", "the Faust legend")),
        ("Middle High German", 2, ("the Nibelungenlied", "grammar", "Walther von der Vogelweide")),
    ), (("Joynes-Meissner", "German Grammar"), ("Thomas", "Practical German Grammar"),
        ("Whitney", "Compendious German Grammar"), ("Thomas", "Goethe's Faust"))),
    _Dept("Greek", "Gk.", (
        ("Elementary Greek", 0, ("forms and syntax", "Xenophon's Anabasis", "prose composition")),
        ("Homer", 0, ("the Iliad", "the Homeric dialect", "prosody")),
        ("Plato", 1, ("the Apology", "the Crito", "the Phaedo")),
        ("Greek Tragedy", 1, ("Sophocles", "Euripides", "the Greek theatre")),
        ("Thucydides", 1, ("the Sicilian expedition", "Greek historiography", "syntax")),
        ("Greek Prose Composition", 2, ("the periodic sentence", "the style of Demosthenes", "translation into Greek")),
    ), (("Goodwin", "Greek Grammar"), ("White", "First Greek Book"), ("Seymour", "Homer's Iliad"),
        ("Jebb", "Sophocles"), ("Liddell and Scott", "Greek-English Lexicon")), classics=True),
    _Dept("History", "Hist.", (
        ("General History", 0, ("the ancient world", "the Middle Ages", "modern Europe")),
        ("History of England", 0, ("the Norman conquest", "the Tudor period", "the growth of Parliament")),
        ("American History", 0, ("the colonial period", "the Revolution", "the Constitution")),
        ("History of Rome", 0, ("the kingdom", "the republic", "the early empire")),
        ("Mediaeval History", 1, ("the barbarian invasions", "the Papacy and the Empire", "feudalism")),
        ("The French Revolution", 1, ("the old regime", "the Revolution", "Napoleon")),
        ("Constitutional History of the United States", 1, ("the Articles of Confederation", "the Constitution", "the slavery controversy")),
        ("Historical Method", 2, ("the criticism of sources", "bibliography", "the writing of history")),
    ), (("Myers", "General History"), ("Fisher", "Outlines of Universal History"),
        ("Channing", "Student's History of the United States"), ("Green", "Short History of the English People"),
        ("Robinson", "Introduction to the History of Western Europe"),
        ("Fiske", "The Critical Period of American History"))),
    _Dept("Latin", "Lat.", (
        ("Caesar", 0, ("the Gallic War", "forms and syntax", "sight reading")),
        ("Cicero's Orations", 0, ("the orations against Catiline", "syntax", "prose composition")),
        ("Virgil", 0, ("the Aeneid", "prosody", "mythology")),
        ("Livy", 1, ("books XXI and XXII", "Roman history", "syntax")),
        ("Horace", 1, ("the Odes", "the Epodes", "Latin metres")),
        ("Tacitus", 1, ("the Germania", "the Agricola", "the Annals")),
        ("Latin Prose Composition", 1, ("the periodic sentence", "the style of Cicero", "translation into Latin")),
        ("Roman Private Life", 2, ("the Roman house", "the family", "inscriptions")),
    ), (("Allen and Greenough", "Latin Grammar"), ("Gildersleeve and Lodge", "Latin Grammar"),
        ("Harkness", "A Complete Latin Grammar"), ("Bennett", "Latin Composition"),
        ("Kelsey", "Caesar's Gallic War"), ("Greenough", "Virgil's Aeneid")), classics=True),
    _Dept("Mathematics", "Math.", (
        ("Elementary Algebra", 0, ("factoring", "fractions", "simple equations")),
        ("Plane Geometry", 0, ("rectilinear figures", "the circle", "proportion")),
        ("Solid Geometry", 0, ("lines and planes in space", "polyhedrons", "the sphere")),
        ("Plane Trigonometry", 0, ("the trigonometric functions", "logarithms", "the solution of triangles")),
        ("College Algebra", 1, ("quadratic equations", "progressions", "determinants")),
        ("Analytic Geometry", 1, ("the straight line", "the conic sections", "higher plane curves")),
        ("Differential Calculus", 1, ("limits", "derivatives", "maxima and minima")),
        ("Integral Calculus", 1, ("integration", "areas and volumes", "infinite series")),
        ("Differential Equations", 2, ("equations of the first order", "linear equations", "applications to physics")),
        ("Theory of Equations", 2, ("the roots of equations", "symmetric functions", "the solution of cubics")),
    ), (("Wentworth", "Plane and Solid Geometry"), ("Wentworth", "College Algebra"),
        ("Smith and Gale", "Elements of Analytic Geometry"),
        ("Granville", "Elements of the Differential and Integral Calculus"),
        ("Osgood", "Differential and Integral Calculus"), ("Hall and Knight", "Higher Algebra"),
        ("Todhunter", "Plane Trigonometry"), ("Murray", "Differential Equations"))),
    _Dept("Mechanical Engineering", "M.E.", (
        ("Mechanical Drawing", 0, ("the use of instruments", "projections", "working drawings")),
        ("Shop Work", 0, ("carpentry", "forging", "machine tools")),
        ("Kinematics of Machinery", 1, ("gearing", "cams", "link work")),
        ("Thermodynamics", 1, ("the laws of thermodynamics", "the steam engine", "gas engines")),
        ("Steam Boilers", 1, ("boiler construction", "combustion", "boiler tests")),
        ("Machine Design", 2, ("the strength of machine parts", "shafting", "the design of engines")),
    ), (("Peabody", "Thermodynamics of the Steam Engine"), ("Church", "Mechanics of Engineering"),
        ("Unwin", "Elements of Machine Design"), ("Thurston", "Manual of the Steam Engine")),
        engineering=True),
    _Dept("Philosophy", "Phil.", (
        ("Logic", 0, ("the syllogism", "induction", "fallacies")),
        ("Psychology", 0, ("sensation", "perception", "the emotions")),
        ("History of Philosophy", 1, ("Greek philosophy", "Descartes and Spinoza", "Kant")),
        ("Ethics", 1, ("the moral ideal", "duty", "theories of conduct")),
        ("Experimental Psychology", 2, ("reaction time", "psychophysical methods", "laboratory practice")),
        ("Metaphysics", 2, ("the problem of knowledge", "idealism", "the nature of reality")),
    ), (("Jevons", "Elementary Lessons in Logic"), ("James", "Psychology, Briefer Course"),
        ("Porter", "Elements of Intellectual Science"), ("Paulsen", "Introduction to Philosophy"),
        ("Titchener", "A Text-Book of Psychology"), ("Weber", "History of Philosophy"))),
    _Dept("Physics", "Phys.", (
        ("Elementary Physics", 0, ("mechanics", "heat", "sound and light")),
        ("General Physics", 1, ("the mechanics of solids", "electricity and magnetism", "optics")),
        ("Electrical Measurements", 1, ("galvanometers", "the measurement of resistance", "the Wheatstone bridge")),
        ("Heat", 1, ("thermometry", "calorimetry", "conduction")),
        ("Light", 1, ("reflection and refraction", "interference", "polarization")),
        ("Theory of Electricity", 2, ("potential", "electromagnetic induction", "electric waves")),
    ), (("Ganot", "Elementary Treatise on Physics"), ("Millikan and Gale", "A First Course in Physics"),
        ("Carhart", "University Physics"), ("Kimball", "College Physics"),
        ("Thompson", "Elementary Lessons in Electricity and Magnetism"), ("Preston", "The Theory of Light")),
        lab=True),
    _Dept("Political Economy", "Econ.", (
        ("Elements of Political Economy", 0, ("production", "exchange", "the distribution of wealth")),
        ("Money and Banking", 1, ("the theory of money", "banking systems", "the national banking act")),
        ("Public Finance", 1, ("taxation", "public debts", "the budget")),
        ("Economic History of the United States", 1, ("the colonial period", "the tariff", "the growth of manufactures")),
        ("Labor Problems", 1, ("trade unions", "wages", "arbitration")),
        ("Statistics", 2, ("the collection of data", "averages", "the census")),
    ), (("Walker", "Political Economy"), ("Mill", "Principles of Political Economy"),
        ("Taussig", "Principles of Economics"), ("Seligman", "Principles of Economics"),
        ("Ely", "Outlines of Economics"), ("Dunbar", "Theory and History of Banking"))),
    _Dept("Political Science", "Pol. Sci.", (
        ("American Government", 0, ("the federal Constitution", "state government", "political parties")),
        ("Comparative Politics", 1, ("the government of England", "the government of France", "the German Empire")),
        ("Municipal Government", 1, ("the city charter", "the mayor and council", "municipal reform")),
        ("International Law", 1, ("the rights of neutrals", "treaties", "arbitration")),
        ("Constitutional Law", 2, ("the powers of Congress", "the judiciary", "leading cases")),
    ), (("Bryce", "The American Commonwealth"), ("Wilson", "The State"), ("Woolsey", "International Law"),
        ("Cooley", "Principles of Constitutional Law"), ("Goodnow", "Municipal Government"))),
    _Dept("Spanish", "Span.", (
        ("Elementary Spanish", 0, ("grammar", "pronunciation", "the reading of easy prose")),
        ("Spanish Composition and Conversation", 1, ("commercial correspondence", "conversation", "composition")),
        ("Spanish Literature of the Golden Age", 2, ("Cervantes", "Lope de Vega", "the picaresque novel")),
    ), (("Hills and Ford", "Spanish Grammar"), ("Ramsey", "A Text-Book of Modern Spanish"))),
    _Dept("Zoology", "Zool.", (
        ("General Zoology", 0, ("the invertebrates", "the vertebrates", "dissection")),
        ("Comparative Anatomy of Vertebrates", 1, ("the skeleton", "the nervous system", "dissection of types")),
        ("Embryology", 1, ("the development of the chick", "maturation", "cleavage")),
        ("Histology", 1, ("the cell", "the tissues", "microscopical technique")),
        ("Entomology", 1, ("the classification of insects", "insect anatomy", "economic entomology")),
        ("Heredity and Evolution", 2, ("theories of evolution", "heredity", "variation")),
    ), (("Hertwig", "Manual of Zoology"), ("Parker", "Elementary Biology"),
        ("Huxley and Martin", "Practical Biology"), ("Sedgwick and Wilson", "General Biology"),
        ("Foster and Balfour", "Elements of Embryology")), lab=True),
)

_SURNAMES = (
    "Abbott", "Adams", "Allen", "Baldwin", "Bradford", "Brown", "Burgess", "Carver", "Chandler",
    "Coolidge", "Cushing", "Dunning", "Dwight", "Eliot", "Emerson", "Fairchild", "Gilman",
    "Hale", "Hastings", "Holbrook", "Howland", "Hyde", "Kellogg", "Kittredge", "Ladd", "Lathrop",
    "Lowell", "Mather", "Merrill", "Morse", "Newell", "Norton", "Osborn", "Palmer", "Perkins",
    "Pickering", "Porter", "Pratt", "Prescott", "Putnam", "Royce", "Sanford", "Sedgwick", "Smith",
    "Stanton", "Sumner", "Thayer", "Tucker", "Tyler", "Ware", "Weld", "Wheeler", "Whitney",
    "Winslow", "Bancroft", "Channing", "Everett", "Fiske", "Greene", "Hooker", "Lyman", "Sherman",
    "Spencer", "Stearns", "Wells", "Woodward", "Goodwin", "Hadley", "Jewett", "Kimball",
)
_MEN = ("John", "William", "Charles", "George", "Henry", "Edward", "Frederick", "Arthur", "Albert",
        "Samuel", "Thomas", "James", "Frank", "Herbert", "Walter", "Ernest", "Joseph", "Francis")
_WOMEN = ("Mary", "Alice", "Ellen", "Katharine", "Margaret", "Sarah", "Emily", "Florence", "Edith",
          "Helen", "Clara", "Louise", "Harriet", "Grace")
_INITIALS = "ABCDEFGHJLMNRSTW"

_STATE_NAMES = {
    "CA": "California", "NY": "New York", "MA": "Massachusetts", "IL": "Illinois",
    "OH": "Ohio", "PA": "Pennsylvania", "MI": "Michigan", "VA": "Virginia", "CT": "Connecticut",
    "NJ": "New Jersey", "IN": "Indiana", "WI": "Wisconsin", "MN": "Minnesota", "IA": "Iowa",
    "MO": "Missouri", "TX": "Texas", "GA": "Georgia", "NC": "North Carolina", "MD": "Maryland",
}


SchoolKind = Literal["university", "college", "institute", "high_school", "normal"]


@dataclass(frozen=True)
class _School:
    slug: str
    name: str
    kind: SchoolKind
    city: str
    women: bool = False


_SCHOOLS: dict[str, tuple[_School, ...]] = {
    "CA": (
        _School("berkeley", "University of California", "university", "Berkeley"),
        _School("stanford", "Leland Stanford Junior University", "university", "Palo Alto"),
        _School("pomona", "Pomona College", "college", "Claremont"),
        _School("lincoln_high", "Lincoln High School", "high_school", "Los Angeles"),
        _School("ucla", "University of California at Los Angeles", "university", "Los Angeles"),
    ),
    "NY": (
        _School("columbia", "Columbia University", "university", "New York"),
        _School("cornell", "Cornell University", "university", "Ithaca"),
        _School("vassar", "Vassar College", "college", "Poughkeepsie", women=True),
        _School("erasmus_hall", "Erasmus Hall High School", "high_school", "Brooklyn"),
        _School("oswego_normal", "State Normal and Training School", "normal", "Oswego"),
    ),
    "MA": (
        _School("mit", "Massachusetts Institute of Technology", "institute", "Boston"),
        _School("harvard", "Harvard University", "university", "Cambridge"),
        _School("wellesley", "Wellesley College", "college", "Wellesley", women=True),
        _School("boston_latin", "Boston Latin School", "high_school", "Boston"),
        _School("williams", "Williams College", "college", "Williamstown"),
    ),
    "IL": (
        _School("uchicago", "The University of Chicago", "university", "Chicago"),
        _School("northwestern", "Northwestern University", "university", "Evanston"),
        _School("knox", "Knox College", "college", "Galesburg"),
        _School("lincoln_high", "Lincoln High School", "high_school", "Springfield"),
        _School("illinois", "University of Illinois", "university", "Urbana"),
    ),
    "OH": (
        _School("oberlin", "Oberlin College", "college", "Oberlin"),
        _School("ohio_state", "The Ohio State University", "university", "Columbus"),
        _School("central_high", "Central High School", "high_school", "Cleveland"),
    ),
    "PA": (
        _School("penn", "University of Pennsylvania", "university", "Philadelphia"),
        _School("bryn_mawr", "Bryn Mawr College", "college", "Bryn Mawr", women=True),
        _School("lehigh", "Lehigh University", "institute", "South Bethlehem"),
    ),
    "MI": (
        _School("michigan", "University of Michigan", "university", "Ann Arbor"),
        _School("ypsilanti_normal", "Michigan State Normal College", "normal", "Ypsilanti"),
        _School("hillsdale", "Hillsdale College", "college", "Hillsdale"),
    ),
}

_TOWNS = ("Lincoln", "Franklin", "Springfield", "Madison", "Clinton", "Salem", "Fairview",
          "Georgetown", "Greenville", "Marion", "Oxford", "Milton", "Auburn", "Bristol", "Dover",
          "Jackson", "Newton", "Riverside", "Ashland", "Burlington", "Chester", "Hudson", "Jefferson",
          "Kingston", "Lexington", "Manchester", "Plymouth", "Richmond", "Warren", "Windsor")
_GENERIC_KINDS: tuple[tuple[str, str, SchoolKind], ...] = (
    ("high", "{town} High School", "high_school"),
    ("college", "{town} College", "college"),
    ("academy", "{town} Academy", "high_school"),
    ("normal", "State Normal School at {town}", "normal"),
    ("university", "University of {town}", "university"),
)

# Sections a long catalog runs into once every department has been listed once:
# (heading suffix, course title prefix, course number prefix).
_SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("", "", ""),
    ("ADVANCED COURSES", "Advanced ", ""),
    ("SUMMER SESSION", "", "S"),
    ("EXTENSION COURSES", "", "E"),
    ("EVENING CLASSES", "", "N"),
)
_RANK_ORDER = ("Professor", "Associate Professor", "Assistant Professor", "Instructor", "Teacher")
_PROPER_SUBJECTS = frozenset({"English", "French", "German", "Greek", "Latin", "Spanish"})
_NUMBER_WORDS = ("One", "Two", "Three", "Four", "Five", "Six")
_ORDINALS = ("First", "Second", "Third", "Fourth")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan.", "Feb.", "March", "April", "May", "June", "July", "Aug.", "Sept.", "Oct.", "Nov.", "Dec.")


def _school_pool(state: str) -> list[_School]:
    """Known schools for the state first, then generic town schools (enough for any corpus)."""
    pool = list(_SCHOOLS.get(state, ()))
    seen = {s.slug for s in pool}
    for town in _TOWNS:
        for suffix, pattern, kind in _GENERIC_KINDS:
            slug = f"{town.lower()}_{suffix}"
            if slug not in seen:
                seen.add(slug)
                pool.append(_School(slug, pattern.format(town=town), kind, town))
    return pool


# --------------------------------------------------------------------------------------------
# Fonts and measuring
# --------------------------------------------------------------------------------------------

Style = Literal["regular", "bold", "italic"]

_FONT_FILES: dict[str, tuple[str, ...]] = {
    "regular": ("DejaVuSerif.ttf", "LiberationSerif-Regular.ttf", "NimbusRoman-Regular.otf",
                "Times New Roman.ttf", "times.ttf", "FreeSerif.ttf", "DejaVuSans.ttf"),
    "bold": ("DejaVuSerif-Bold.ttf", "LiberationSerif-Bold.ttf", "NimbusRoman-Bold.otf",
             "Times New Roman Bold.ttf", "timesbd.ttf", "FreeSerifBold.ttf", "DejaVuSans-Bold.ttf"),
    "italic": ("DejaVuSerif-Italic.ttf", "LiberationSerif-Italic.ttf", "NimbusRoman-Italic.otf",
               "Times New Roman Italic.ttf", "timesi.ttf", "FreeSerifItalic.ttf", "DejaVuSans-Oblique.ttf"),
}
_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation",
              "/usr/share/fonts/truetype/liberation2", "/usr/share/fonts/opentype/urw-base35",
              "/usr/share/fonts/truetype/freefont", "/usr/share/fonts/dejavu", "/usr/share/fonts")

AnyFont = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=None)
def _font(style: str, size: int) -> AnyFont:
    for name in _FONT_FILES[style] + _FONT_FILES["regular"]:
        candidates = [os.path.join(d, name) for d in _FONT_DIRS] + [name]
        for candidate in candidates:
            try:
                # The basic layout engine: the same glyph positions with or without libraqm.
                return ImageFont.truetype(candidate, size, layout_engine=ImageFont.Layout.BASIC)
            except OSError:
                continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: a fixed bitmap font
        return ImageFont.load_default()


_WIDTHS: dict[tuple[str, int, str], float] = {}


def _width(style: str, size: int, text: str) -> float:
    key = (style, size, text)
    found = _WIDTHS.get(key)
    if found is None:
        found = float(_font(style, size).getlength(text))
        if len(_WIDTHS) < 200_000:
            _WIDTHS[key] = found
    return found


def _line_width(style: str, size: int, words: Sequence[str]) -> float:
    return sum(_width(style, size, w) for w in words) + _space(style, size) * (len(words) - 1)


def _space(style: str, size: int) -> float:
    # Generous word spacing, as in period letterpress; OCR engines also keep wide spaces better.
    return _width(style, size, " ") * _WORD_SPACE


@lru_cache(maxsize=None)
def _vertical(style: str, size: int) -> tuple[float, float]:
    """Top and bottom of ink relative to the draw origin, for lines with capitals and descenders."""
    box = _font(style, size).getbbox("Hdgjy")
    return float(box[1]), float(box[3])


@lru_cache(maxsize=4096)
def _wrap(text: str, style: str, size: int, width: float) -> tuple[tuple[str, ...], ...]:
    """Greedy word wrap (each paragraph is measured for fit, then placed: cache the result)."""
    lines: list[list[str]] = []
    current: list[str] = []
    space = _space(style, size)
    used = 0.0
    for word in text.split():
        w = _width(style, size, word)
        if current and used + space + w > width:
            lines.append(current)
            current, used = [word], w
        else:
            used = used + space + w if current else w
            current.append(word)
    if current:
        lines.append(current)
    return tuple(tuple(line) for line in lines)


# --------------------------------------------------------------------------------------------
# Layout: paragraphs flowed into columns
# --------------------------------------------------------------------------------------------


@dataclass
class _Para:
    text: str
    style: Style = "regular"
    size: int = 22
    align: Literal["left", "center", "justify", "right"] = "left"
    indent: int = 0  # first-line indent
    space_before: int = 0
    space_after: int = 0
    right: str | None = None  # a second text set flush right on the same line (contents rows)


@dataclass
class _Placed:
    text: str
    style: Style
    size: int
    # (words, x, y, justified width or None) per line; y is the draw origin (top of the em box)
    lines: list[tuple[Sequence[str], float, float, float | None]]
    bbox: tuple[float, float, float, float]


@dataclass
class _Item:
    """A unit the flow never splits (a course entry, a heading kept with what follows)."""

    paras: list[_Para]
    course: Course | None = None
    courses: list[Course] = field(default_factory=list)
    dept_start: str | None = None


def _line_height(size: int) -> int:
    return round(size * _LEADING)


def _para_lines(para: _Para, width: float) -> tuple[tuple[str, ...], ...]:
    return _wrap(para.text, para.style, para.size, width - para.indent)


def _item_height(item: _Item, width: float) -> int:
    total = 0
    for para in item.paras:
        total += para.space_before + para.space_after
        total += _line_height(para.size) * (1 if para.right is not None else len(_para_lines(para, width)))
    return total


def _place_para(para: _Para, x0: float, x1: float, y: float) -> tuple[list[_Placed], float]:
    """Lay out one paragraph from `y`; returns the placed blocks and the next free y."""
    y += para.space_before
    lh = _line_height(para.size)
    top, bottom = _vertical(para.style, para.size)
    width = x1 - x0
    placed: list[_Placed] = []
    if para.right is not None:
        lw = _line_width(para.style, para.size, para.text.split())
        rw = _line_width(para.style, para.size, para.right.split())
        placed.append(_Placed(para.text, para.style, para.size, [(para.text.split(), x0 + para.indent, y, None)],
                              (x0 + para.indent, y + top, x0 + para.indent + lw, y + bottom)))
        placed.append(_Placed(para.right, para.style, para.size, [(para.right.split(), x1 - rw, y, None)],
                              (x1 - rw, y + top, x1, y + bottom)))
        return placed, y + lh + para.space_after
    lines = _para_lines(para, width)
    out_lines: list[tuple[Sequence[str], float, float, float | None]] = []
    bx0, bx1 = math.inf, -math.inf
    for i, words in enumerate(lines):
        indent = para.indent if i == 0 else 0
        avail = width - indent
        natural = _line_width(para.style, para.size, words)
        justified: float | None = None
        if para.align == "center":
            x = x0 + (width - natural) / 2
        elif para.align == "right":
            x = x1 - natural
        else:
            x = x0 + indent
            # Justify unless the spaces would open up into rivers (and split OCR lines apart).
            if (para.align == "justify" and i < len(lines) - 1 and len(words) > 1
                    and (avail - natural) / (len(words) - 1) <= 1.5 * _space(para.style, para.size)):
                justified = avail
        extent = justified if justified is not None else natural
        bx0, bx1 = min(bx0, x), max(bx1, x + extent)
        out_lines.append((words, x, y + i * lh, justified))
    text = "\n".join(" ".join(words) for words in lines)
    bbox = (bx0, y + top, bx1, y + (len(lines) - 1) * lh + bottom)
    placed.append(_Placed(text, para.style, para.size, out_lines, bbox))
    return placed, y + len(lines) * lh + para.space_after


class _Flow:
    """Columns filled top to bottom, left to right; reading order is placement order."""

    def __init__(self, columns: Sequence[tuple[float, float]], top: float, bottom: float):
        self.columns = list(columns)
        self.top, self.bottom = top, bottom
        self.col = 0
        self.y = top
        self.blocks: list[_Placed] = []

    @property
    def width(self) -> float:
        return self.columns[0][1] - self.columns[0][0]

    def place(self, item: _Item) -> bool:
        if self.col >= len(self.columns):
            return False
        height = _item_height(item, self.width)
        while self.y + height > self.bottom:
            if self.y == self.top and height > self.bottom - self.top:
                return False  # taller than a whole column: never fits
            self.col += 1
            self.y = self.top
            if self.col >= len(self.columns):
                return False
        x0, x1 = self.columns[self.col]
        for para in item.paras:
            placed, self.y = _place_para(para, x0, x1, self.y)
            self.blocks.extend(placed)
        return True


# --------------------------------------------------------------------------------------------
# Book content
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Teacher:
    first: str
    initial: str
    surname: str
    rank: str  # "Professor", "Assistant Professor", "Instructor", "Teacher"
    degree: str
    title: str  # how the catalog names them in course entries: "Professor Smith", "Miss Porter"


@dataclass
class _PageLayout:
    page: int
    content_type: str
    blocks: list[_Placed]
    rules: list[tuple[float, float, float, float, int]]  # x0, y0, x1, y1, width
    courses: list[Course]
    layout_description: str


@dataclass
class _Frame:
    head: list[_Placed]
    rules: list[tuple[float, float, float, float, int]]
    top: float
    bottom: float
    foot: list[_Placed]


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


class _Book:
    """One catalog: its school, faculty, departments and the page-by-page layout."""

    def __init__(self, key: BookKey, school: _School, pages: int, seed: int, size: tuple[int, int]):
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
            body=max(14, round(w * (_BODY_2COL if columns == 2 else _BODY_1COL))),
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

    def _choose_departments(self) -> list[_Dept]:
        rng = self.rng
        kind = self.school.kind
        pool = []
        for dept in _DEPARTMENTS:
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
        surname = self._surnames.pop() if getattr(self, "_surnames", None) else rng.choice(_SURNAMES)
        first = rng.choice(_WOMEN if women else _MEN)
        initial = rng.choice(_INITIALS)
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
        self._surnames = rng.sample(_SURNAMES, len(_SURNAMES))
        faculty: dict[str, list[_Teacher]] = {}
        for dept in self.departments:
            ranks = ["Teacher"] if self.secondary else ["Professor"]
            extra = rng.randint(0, 2)
            junior = ["Assistant Professor" if self.year >= 1895 else "Instructor", "Instructor"]
            if self.year >= 1905:
                junior.insert(0, "Associate Professor")
            ranks += ["Teacher"] * extra if self.secondary else sorted(
                rng.sample(junior, min(extra, len(junior))), key=_RANK_ORDER.index)
            people = []
            for rank in ranks:
                women = self.school.women and rng.random() < 0.7 or self.secondary and rng.random() < 0.5
                if not self._surnames:
                    self._surnames = rng.sample(_SURNAMES, len(_SURNAMES))
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
        n = rng.choice(_NUMBER_WORDS[1:5] if not self.secondary else _NUMBER_WORDS[2:5])
        if self.secondary:
            return f"{n} periods a week."
        if lab and rng.random() < 0.5:
            return f"{n} hours; laboratory work {rng.choice(('two', 'three'))} afternoons a week."
        return rng.choice((f"{n} hours a week.", f"{n} hours.", f"{n} hours a week, with collateral reading."))

    def _description(self, dept: _Dept, topics: tuple[str, ...], earlier: list[str]) -> tuple[str, list[str]]:
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

    def _course_items(self, dept: _Dept, cycle: int) -> Iterator[_Item]:
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
            _SECTIONS[cycle] if cycle < len(_SECTIONS) else ("ADDITIONAL COURSES", "", f"X{cycle}-"))
        if section:
            heading = f"{heading} ({section})"
        head_paras = [_Para(heading, "bold", body + 3, "center", space_before=round(body * 0.8),
                            space_after=round(body * 0.3))]
        head_paras.append(_Para("; ".join(p.title for p in people) + ".", "italic", body - 1, "center",
                                space_after=round(body * 0.4)))
        subject = dept.name if dept.name in _PROPER_SUBJECTS else dept.name.lower()
        if rng.random() < 0.4 and not cycle:
            head_paras.append(_Para(
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
            paras: list[_Para] = []
            if index == 0 and prep_letter:
                label, level = "A", "preparatory"
            elif tier == 2 and self.school.kind in ("university", "institute"):
                number = max(number + rng.randint(1, 3), 101) if number < 101 else number + rng.randint(1, 2)
                label, level = str(number), "graduate"
                if not graduate_noted:
                    paras.append(_Para("Courses primarily for Graduates", "italic", body, "center",
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
            paras.append(_Para(header, "bold", body, "left", space_before=round(body * 0.55)))
            paras.append(_Para(body_text, "regular", body, "justify" if s.justify else "left",
                               indent=round(body * 1.2)))
            if texts:
                label_word = "Text" if len(texts) == 1 else "Texts"
                line = f"{label_word}: " + "; ".join(f"{a}, {t}" for a, t in texts) + "."
                paras.append(_Para(line, "italic", body, "left", indent=round(body * 1.2)))
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
                yield _Item(head_paras + paras, course=course, dept_start=heading)
                first = False
            else:
                yield _Item(paras, course=course)

    def _all_course_items(self) -> Iterator[_Item]:
        cycle = 0
        while True:  # a very long book runs out of vocabulary: start an "advanced" pass
            for dept in self.departments:
                yield from self._course_items(dept, cycle)
            cycle += 1

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
        top, bottom = _vertical("regular", size)
        nw = _line_width("regular", size, [str(page)])
        if self.style.head_at_top:
            tw = _line_width("regular", size, title.split())
            tx = (w - tw) / 2
            title_block = _Placed(title, "regular", size, [(title.split(), tx, y, None)],
                                  (tx, y + top, tx + tw, y + bottom))
            nx = m if page % 2 == 0 else w - m - nw
            num = _Placed(str(page), "regular", size, [([str(page)], nx, y, None)], (nx, y + top, nx + nw, y + bottom))
            rule_y = y + _line_height(size) + 6
            return _Frame(head=[num, title_block] if page % 2 == 0 else [title_block, num],
                          rules=[(m, rule_y, w - m, rule_y, 2)],
                          top=rule_y + round(self.style.body * 0.6), bottom=h - round(h * 0.05), foot=[])
        tw = _line_width("italic", size, title.split())
        t_top, t_bottom = _vertical("italic", size)
        head = _Placed(title, "italic", size, [(title.split(), (w - tw) / 2, y, None)],
                       ((w - tw) / 2, y + t_top, (w + tw) / 2, y + t_bottom))
        fy = h - round(h * 0.05)
        foot = _Placed(str(page), "regular", size, [([str(page)], (w - nw) / 2, fy, None)],
                       ((w - nw) / 2, fy + top, (w + nw) / 2, fy + bottom))
        return _Frame(head=[head], rules=[], top=y + _line_height(size) + round(self.style.body * 0.9),
                      bottom=fy - 10, foot=[foot])

    def _body_flow(self, page: int, columns: int | None = None) -> tuple[_Flow, _Frame]:
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
        flow = _Flow(spans, frame.top, frame.bottom)
        flow.blocks.extend(frame.head)
        return flow, frame

    # -- page kinds -----------------------------------------------------------------------------

    def _title_page(self, page: int) -> _PageLayout:
        rng = self.rng
        w, h = self.style.size
        m = self.style.margin
        base = max(14, round(w * 0.026))
        state = _STATE_NAMES.get(self.key.state, self.key.state)
        kind_word = {"university": "University", "college": "College", "institute": "Institute",
                     "high_school": "School", "normal": "School"}[self.school.kind]
        flow = _Flow([(m + base, w - m - base)], round(h * 0.13), h - round(h * 0.06))
        heading = rng.choice(("ANNUAL CATALOGUE", "CATALOGUE", "ANNUAL REGISTER", "THE CATALOGUE"))
        paras = [
            _Para(heading, "regular", round(base * 1.25), "center"),
            _Para("OF THE", "italic", base, "center", space_before=round(base * 0.8)),
            _Para(self.school.name.upper(), "bold", round(base * 1.6), "center", space_before=round(base * 0.8)),
            _Para("Catalogue of Courses", "italic", round(base * 1.1), "center", space_before=round(base * 1.5)),
            _Para(f"for the Academic Year {self.academic_year}", "regular", base, "center",
                  space_before=round(base * 0.4)),
        ]
        if rng.random() < 0.6:
            paras.append(_Para(f"with Announcements for {self.year + 1}-{self.year + 2}", "italic",
                               round(base * 0.9), "center", space_before=round(base * 0.4)))
        paras.append(_Para(f"{self.school.city.upper()}, {state.upper()}", "regular", base, "center",
                           space_before=round(base * 6)))
        paras.append(_Para(rng.choice((f"Published by the {kind_word}", f"Printed for the {kind_word}",
                                       "Press of the Board of Trustees")), "italic", base, "center",
                           space_before=round(base * 0.5)))
        paras.append(_Para(str(self.year), "regular", base, "center", space_before=round(base * 0.5)))
        for para in paras:
            flow.place(_Item([para]))
        rule_y = flow.blocks[2].bbox[1] - round(base * 0.6) if len(flow.blocks) > 2 else h * 0.25
        rules = [(w * 0.35, rule_y, w * 0.65, rule_y, 2)]
        return _PageLayout(page, "title_page", flow.blocks, rules, [],
                           "Title page: centered lines in several sizes, no running head.")

    def _filled_page(self, page: int, content_type: str, title: str, items: Iterator[_Item],
                     columns: int = 1, description: str = "") -> _PageLayout:
        flow, frame = self._body_flow(page, columns)
        body = self.style.body
        flow.place(_Item([_Para(title, "bold", body + 4, "center", space_after=round(body * 0.6))]))
        for item in items:
            if not flow.place(item):
                break
        return _PageLayout(page, content_type, flow.blocks + frame.foot, frame.rules, [], description)

    def _toc_items(self, sections: list[tuple[str, int]]) -> Iterator[_Item]:
        body = self.style.body
        for name, number in sections:
            yield _Item([_Para(name, "regular", body, "left", space_after=round(body * 0.25), right=str(number))])

    def _calendar_items(self) -> Iterator[_Item]:
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
                yield _Item([_Para(str(day.year), "bold", body, "center", space_before=round(body * 0.6),
                                   space_after=round(body * 0.2))])
            text = f"{_MONTHS[day.month - 1]} {day.day}, {_DAYS[day.weekday()]}. {what}"
            yield _Item([_Para(text, "regular", body, "left", space_after=round(body * 0.2))])

    @staticmethod
    def _thanksgiving(year: int) -> date:
        first = date(year, 11, 1)
        first_thursday = first + timedelta(days=(3 - first.weekday()) % 7)
        return first_thursday + timedelta(days=21)

    def _faculty_items(self) -> Iterator[_Item]:
        body = self.style.body
        p = self.president
        yield _Item([_Para(f"{p.first.upper()} {p.initial}. {p.surname.upper()}, {p.degree}, President.",
                           "regular", body, "left", space_after=round(body * 0.35))])
        for dept in self.departments:
            for t in self.faculty[dept.name]:
                if self.secondary:
                    role = f"Teacher of {dept.name}"
                else:
                    role = f"{t.rank} of {dept.name}"
                text = f"{t.first.upper()} {t.initial}. {t.surname.upper()}, {t.degree}, {role}."
                yield _Item([_Para(text, "regular", body, "left", space_after=round(body * 0.35))])

    def _admission_items(self) -> Iterator[_Item]:
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
                paras.append(_Para(heads[i], "italic", body, "left", space_before=round(body * 0.4)))
            paras.append(_Para(text, "regular", body, "justify" if self.style.justify else "left",
                               indent=round(body * 1.2), space_after=round(body * 0.4)))
            yield _Item(paras)

    def _index_items(self, entries: list[tuple[str, list[int]]]) -> Iterator[_Item]:
        size = max(12, self.style.body - 2)
        for name, pages in entries:
            text = f"{name}, {', '.join(str(p) for p in pages)}"
            yield _Item([_Para(text, "regular", size, "left", space_after=round(size * 0.15))])

    # -- the whole book -----------------------------------------------------------------------

    def layout(self) -> list[_PageLayout]:
        types = self.content_types()
        layouts: dict[int, _PageLayout] = {}
        course_items = self._all_course_items()
        pending: _Item | None = None
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
            layouts[page] = _PageLayout(page, "course_listing", flow.blocks + frame.foot, frame.rules, placed,
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


def _spell(n: int) -> str:
    return {14: "fourteen", 15: "fifteen", 16: "sixteen"}.get(n, str(n))


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _rotate_point(x: float, y: float, cx: float, cy: float, angle: float) -> tuple[float, float]:
    """Where `Image.rotate(angle)` (counter-clockwise, about the centre) moves a pixel."""
    a = math.radians(angle)
    dx, dy = x - cx, y - cy
    return cx + dx * math.cos(a) + dy * math.sin(a), cy - dx * math.sin(a) + dy * math.cos(a)


def _skew_bbox(bbox: tuple[float, float, float, float], size: tuple[int, int], angle: float) -> list[float]:
    if angle == 0:
        return [float(round(v)) for v in bbox]
    cx, cy = size[0] / 2, size[1] / 2
    x0, y0, x1, y1 = bbox
    pts = [_rotate_point(x, y, cx, cy, angle) for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return [float(max(0, round(min(xs)))), float(max(0, round(min(ys)))),
            float(min(size[0], round(max(xs)))), float(min(size[1], round(max(ys))))]


@lru_cache(maxsize=4)
def _noise_tile(width: int, height: int) -> Image.Image:
    """A fixed paper texture, larger than a page; pages crop it at random offsets.

    Mostly low-frequency mottling with a light grain and rare dark flecks: fine grain all over
    would make every JPEG several times larger without making the page any more realistic.
    """
    import numpy as np

    gen = np.random.default_rng(20240611)
    w, h = width + _TILE_PAD, height + _TILE_PAD
    # Broad, faint blotches: finer mottling costs JPEG bytes that dense text already needs.
    coarse = gen.normal(0.0, 4.0, size=(h // 48 + 2, w // 48 + 2)).astype("float32")
    mottle = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BILINEAR))
    field = 128.0 + mottle
    field[gen.random(size=(h, w)) < 0.00015] -= 120  # dust
    return Image.fromarray(np.clip(field, 0, 255).astype("uint8"), mode="L")


@lru_cache(maxsize=8)
def _shade(width: int, height: int, binding_left: bool) -> Image.Image:
    """Uneven illumination: darker towards the binding edge (multiplied into the page)."""
    ramp = Image.linear_gradient("L").rotate(90 if binding_left else -90).resize((width, height))
    # ramp: 0 at the binding edge … 255 at the far edge; map to 215..255 with a fast fall-off.
    lut = [round(215 + 40 * (1 - (1 - v / 255) ** 6)) for v in range(256)]
    return ramp.point(lut)


_MASKS: dict[tuple[str, int, str], tuple[Image.Image, int, int] | None] = {}


def _word_mask(style: str, size: int, word: str) -> tuple[Image.Image, int, int] | None:
    """The rendered glyphs of one word and their offset from the draw origin (cached: the
    vocabulary repeats, and pasting a cached mask is many times faster than drawing text)."""
    key = (style, size, word)
    if key in _MASKS:
        return _MASKS[key]
    font = _font(style, size)
    left, top, right, bottom = (int(v) for v in font.getbbox(word))
    found: tuple[Image.Image, int, int] | None = None
    if right > left and bottom > top:
        mask = Image.new("L", (right - left, bottom - top), 0)
        ImageDraw.Draw(mask).text((-left, -top), word, font=font, fill=255)
        found = (mask, left, top)
    if len(_MASKS) < 50_000:
        _MASKS[key] = found
    return found


def _render(layout: _PageLayout, size: tuple[int, int], angle: float, degrade: bool,
            paper: tuple[int, int, int], noise_xy: tuple[int, int], binding_left: bool) -> Image.Image:
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    ink = 20
    for x0, y0, x1, y1, width in layout.rules:
        draw.line((x0, y0, x1, y1), fill=ink + 30, width=width)
    for block in layout.blocks:
        space = _space(block.style, block.size)
        for words, x, y, justified in block.lines:
            widths = [_width(block.style, block.size, w) for w in words]
            gap = space
            if justified is not None and len(words) > 1:
                gap = (justified - sum(widths)) / (len(words) - 1)
            cursor = x
            for word, word_width in zip(words, widths, strict=True):
                glyphs = _word_mask(block.style, block.size, word)
                if glyphs is not None:
                    mask, left, top = glyphs
                    px, py = round(cursor) + left, round(y) + top
                    img.paste(ink, (px, py, px + mask.width, py + mask.height), mask)
                cursor += word_width + gap
    if not degrade:
        return img.convert("RGB")
    if angle:
        img = img.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=255)
    tile = _noise_tile(*size)
    nx, ny = noise_xy
    img = ImageChops.add(img, tile.crop((nx, ny, nx + size[0], ny + size[1])), scale=1.0, offset=-128)
    img = ImageChops.multiply(img, _shade(size[0], size[1], binding_left))
    ink_rgb = (max(0, paper[0] - 205), max(0, paper[1] - 205), max(0, paper[2] - 190))
    return ImageOps.colorize(img, black=ink_rgb, white=paper)


def _encode(img: Image.Image, image_format: str, quality: int = JPEG_QUALITY) -> bytes:
    buf = BytesIO()
    if image_format == "jpg":
        img.save(buf, format="JPEG", quality=quality, optimize=True, progressive=False)
    elif image_format == "png":
        img.save(buf, format="PNG", optimize=False, compress_level=6)
    else:
        img.save(buf, format="TIFF", compression="tiff_lzw")
    return buf.getvalue()


@lru_cache(maxsize=4)
def _blank_bytes(image_format: str) -> bytes:
    return _encode(Image.new("RGB", (16, 22), (238, 230, 206)), image_format)


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BookJob:
    out: str
    key: BookKey
    school: _School
    pages: int
    seed: int
    allow: tuple[tuple[int, float], ...]  # allow-listed pages with first-pass confidence
    image_format: str
    images: str
    degrade: bool
    size: tuple[int, int]
    quality: int


@dataclass(frozen=True)
class _BookResult:
    courses: int
    allow_listed_courses: int


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _label(content_type: str) -> str:
    return "curricular" if content_type == "course_listing" else content_type


def _write_book(job: _BookJob) -> _BookResult:
    book = _Book(job.key, job.school, job.pages, job.seed, job.size)
    layouts = book.layout()
    rng = book.rng
    paper = (rng.randint(232, 246), rng.randint(222, 236), rng.randint(188, 212))
    rel = Path(job.key.state) / job.key.school / str(job.key.year)
    out = Path(job.out)
    allow = dict(job.allow)
    courses = allow_courses = 0
    for layout in layouts:
        # Draw the page's randomness whether or not it is rendered, so blank and rendered
        # corpora carry the same ground truth.
        angle = round(rng.uniform(-0.8, 0.8), 2) if job.degrade else 0.0
        noise_xy = (rng.randrange(_TILE_PAD), rng.randrange(_TILE_PAD))
        binding_left = layout.page % 2 == 1
        shift = rng.randint(-4, 3)  # one sheet a shade lighter or darker than the next, same hue
        page_paper = (max(0, paper[0] + shift), max(0, paper[1] + shift), min(255, max(0, paper[2] + shift)))
        if job.images == "blank":
            data = _blank_bytes(job.image_format)
        else:
            img = _render(layout, job.size, angle, job.degrade, page_paper, noise_xy, binding_left)
            data = _encode(img, job.image_format, job.quality)
        _write(out / "images" / rel / f"{layout.page}.{job.image_format}", data)
        blocks = [
            TextBlock(block_id=i + 1, position=_skew_bbox(b.bbox, job.size, angle), text=b.text,
                      font_style=b.style)
            for i, b in enumerate(layout.blocks)
        ]
        result = OcrPageResult(
            raw_ocr=RawOcr(text_blocks=blocks, layout_description=layout.layout_description),
            page_info=PageInfo(page_number=layout.page, is_complete_page=True, content_type=layout.content_type),
            school_name=job.school.name,
            catalog_year=job.key.year,
            academic_year=book.academic_year,
            courses=layout.courses,
        )
        _write(out / "ground_truth" / rel / f"{layout.page}.json", (result.to_json() + "\n").encode())
        courses += len(layout.courses)
        if layout.page in allow:
            label = {"page": layout.page, "label": _label(layout.content_type), "confidence": allow[layout.page]}
            _write(out / "allow_list" / rel / f"{layout.page}.json", (json.dumps(label) + "\n").encode())
            allow_courses += len(layout.courses)
    return _BookResult(courses, allow_courses)


def _choose_books(rng: random.Random, books: int, states: Sequence[str]) -> list[tuple[BookKey, _School]]:
    """Distinct (state, school, year) on a small grid: a few states × schools × years."""
    n_states = min(len(states), max(1, round(books ** (1 / 3))))
    sampled = set(rng.sample(list(states), n_states))
    picked_states = [s for s in states if s in sampled]
    per_state = math.ceil(books / n_states)
    n_schools = max(1, round(math.sqrt(per_state)))
    span = YEAR_RANGE[1] - YEAR_RANGE[0] + 1
    n_years = math.ceil(per_state / n_schools)
    if n_years > span:
        n_years = span
        n_schools = math.ceil(per_state / span)
    per_state_books: list[list[tuple[BookKey, _School]]] = []
    for state in picked_states:
        pool = _school_pool(state)
        known = [s for s in pool if s in _SCHOOLS.get(state, ())]
        generic = [s for s in pool if s not in known]
        schools = rng.sample(known, min(n_schools, len(known)))
        schools += generic[: n_schools - len(schools)]
        books_here = []
        for school in schools:
            years = sorted(rng.sample(range(YEAR_RANGE[0], YEAR_RANGE[1] + 1), n_years))
            books_here += [(BookKey(state, school.slug, year), school) for year in years]
        per_state_books.append(books_here)
    # Take round-robin across states so a cut keeps them balanced.
    chosen: list[tuple[BookKey, _School]] = []
    for i in range(max(len(b) for b in per_state_books)):
        for books_here in per_state_books:
            if i < len(books_here) and len(chosen) < books:
                chosen.append(books_here[i])
    return sorted(chosen, key=lambda item: item[0])


def _allow_lists(seed: int, keys: Sequence[BookKey], pages: int) -> list[list[int]]:
    """Allow-listed pages per book: most books have gaps (chains break there), some none."""
    lists: list[list[int]] = []
    for key in keys:
        rng = random.Random(f"ocr_assets.sample_corpus.allow:{seed}:{key}")
        allowed = list(range(1, pages + 1))
        if pages >= 4 and rng.random() >= 0.35:
            interior = list(range(2, pages))
            k = 1 if pages < 10 else rng.randint(1, max(1, pages // 8))
            for dropped in rng.sample(interior, min(k, len(interior))):
                allowed.remove(dropped)
            if pages >= 8 and rng.random() < 0.25:
                allowed.remove(1)  # the first pass rejected the title page
        lists.append(allowed)
    if pages >= 5 and keys and all(len(a) == pages for a in lists):
        lists[0] = [p for p in lists[0] if p != pages // 2 + 1]
    if len(keys) >= 2 and pages >= 2 and all(len(a) < pages for a in lists):
        lists[-1] = list(range(1, pages + 1))
    return lists


def generate_corpus(
    out: Path,
    *,
    books: int = 8,
    pages: int = 6,
    seed: int = 0,
    states: list[str] | None = None,
    image_format: str = "jpg",
    degrade: bool = True,
    images: ImageMode = "render",
    page_size: tuple[int, int] = DEFAULT_PAGE_SIZE,
    jpeg_quality: int = JPEG_QUALITY,
    workers: int = 1,
) -> CorpusSummary:
    """Write a synthetic catalog corpus (images, allow-list, ground truth) under `out`.

    `images="blank"` writes one tiny valid image per page instead of rendering (the ground truth
    is the same as a rendered run's), for benchmark corpora of many thousands of pages.
    `workers` > 1 renders books in that many processes; the output is the same either way.
    Existing files at the same paths are replaced; nothing else under `out` is touched.
    """
    if books < 1 or pages < 1:
        raise ValueError(f"books and pages must be at least 1 (got books={books}, pages={pages})")
    fmt = _FORMATS.get(image_format.lower().lstrip("."))
    if fmt is None:
        raise ValueError(f"image_format {image_format!r} is not one of {sorted(set(_FORMATS.values()))}")
    if not 1 <= jpeg_quality <= 95:
        raise ValueError(f"jpeg_quality must be between 1 and 95, not {jpeg_quality}")
    if images not in ("render", "blank"):
        raise ValueError(f"images must be 'render' or 'blank', not {images!r}")
    if page_size[0] < 300 or page_size[1] < 400:
        raise ValueError(f"page_size {page_size} is too small to lay out a page (min 300×400)")
    state_list = list(states) if states else list(DEFAULT_STATES)
    for state in state_list:
        problem = check_name_part(state, "state")
        if problem:
            raise ValueError(problem)
    state_list = list(dict.fromkeys(state_list))
    chosen = _choose_books(random.Random(seed), books, state_list)
    allow = _allow_lists(seed, [key for key, _ in chosen], pages)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        _BookJob(str(out), key, school, pages, seed,
                 tuple((p, _confidence(seed, key, p)) for p in allowed), fmt, images, degrade,
                 (int(page_size[0]), int(page_size[1])), jpeg_quality)
        for (key, school), allowed in zip(chosen, allow, strict=True)
    ]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            results = list(pool.map(_write_book, jobs, chunksize=1))
    else:
        results = [_write_book(job) for job in jobs]
    return CorpusSummary(
        out=out,
        books=[str(key) for key, _ in chosen],
        pages_per_book=pages,
        pages=pages * len(jobs),
        allow_listed=sum(len(a) for a in allow),
        courses=sum(r.courses for r in results),
        allow_listed_courses=sum(r.allow_listed_courses for r in results),
        image_format=fmt,
        images=images,
    )


def _confidence(seed: int, key: BookKey, page: int) -> float:
    return round(random.Random(f"ocr_assets.sample_corpus.conf:{seed}:{key}:{page}").uniform(0.78, 0.99), 2)
