"""The catalogs' vocabulary (1880-1935): departments and their courses, names, states and schools."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Dept:
    name: str
    abbrev: str
    # (title, tier, topics): tier 0 elementary (also taught in high schools), 1 college, 2 advanced.
    courses: tuple[tuple[str, int, tuple[str, ...]], ...]
    texts: tuple[tuple[str, str], ...]  # (author, title)
    lab: bool = False
    engineering: bool = False
    classics: bool = False


DEPARTMENTS: tuple[Dept, ...] = (
    Dept("Astronomy", "Astr.", (
        ("Descriptive Astronomy", 0, ("the solar system", "the motions of the moon", "eclipses")),
        ("General Astronomy", 1, ("celestial mechanics", "the sun and planets", "stellar spectra")),
        ("Practical Astronomy", 1, ("the transit instrument", "the determination of time", "latitude and longitude")),
        ("Theoretical Astronomy", 2, ("the orbits of planets and comets", "perturbations", "the method of least squares")),
    ), (("Young", "General Astronomy"), ("Newcomb", "Popular Astronomy"), ("Todd", "New Astronomy"),
        ("Campbell", "Practical Astronomy"), ("Watson", "Theoretical Astronomy")), lab=True),
    Dept("Botany", "Bot.", (
        ("General Botany", 0, ("the structure of seed plants", "the cell", "the elements of plant physiology")),
        ("Structural Botany", 1, ("the histology of the higher plants", "the use of the microscope", "vegetable tissues")),
        ("Cryptogamic Botany", 1, ("the algae", "the fungi", "the mosses and ferns")),
        ("Plant Physiology", 1, ("nutrition", "growth", "irritability")),
        ("Systematic Botany", 1, ("the classification of flowering plants", "field work", "the herbarium")),
        ("Plant Ecology", 2, ("plant societies", "geographical distribution", "adaptation to environment")),
    ), (("Gray", "Manual of Botany"), ("Bessey", "Botany for High Schools and Colleges"),
        ("Strasburger", "A Text-Book of Botany"), ("Coulter", "Plant Relations"),
        ("Atkinson", "College Text-Book of Botany")), lab=True),
    Dept("Chemistry", "Chem.", (
        ("General Chemistry", 0, ("the non-metallic elements", "the laws of chemical combination", "the atomic theory")),
        ("Qualitative Analysis", 1, ("the separation of the metals", "the analysis of unknown substances", "chemical equations")),
        ("Quantitative Analysis", 1, ("gravimetric methods", "volumetric methods", "the analysis of ores")),
        ("Organic Chemistry", 1, ("the compounds of carbon", "the aliphatic series", "the aromatic series")),
        ("Industrial Chemistry", 1, ("the manufacture of acids and alkalies", "fuels", "metallurgical processes")),
        ("Physical Chemistry", 2, ("solutions", "chemical equilibrium", "electrochemistry")),
    ), (("Remsen", "Inorganic Chemistry"), ("Noyes", "Qualitative Chemical Analysis"),
        ("Talbot", "Quantitative Chemical Analysis"), ("Holleman", "A Text-Book of Organic Chemistry"),
        ("Smith", "General Chemistry for Colleges"), ("Walker", "Introduction to Physical Chemistry")), lab=True),
    Dept("Civil Engineering", "C.E.", (
        ("Plane Surveying", 1, ("the compass and transit", "leveling", "land surveying")),
        ("Railroad Engineering", 1, ("the location of lines", "curves and earthwork", "track construction")),
        ("Hydraulics", 1, ("the flow of water in pipes", "weirs and orifices", "water power")),
        ("Masonry Construction", 1, ("stone and brick", "cements and mortars", "foundations")),
        ("Bridge Design", 2, ("stresses in trusses", "roof trusses", "plate girders")),
        ("Sanitary Engineering", 2, ("water supply", "sewerage", "the purification of water")),
    ), (("Johnson", "Theory and Practice of Surveying"), ("Searles", "Field Engineering"),
        ("Merriman", "Treatise on Hydraulics"), ("Baker", "Treatise on Masonry Construction"),
        ("Trautwine", "Civil Engineer's Pocket-Book")), engineering=True),
    Dept("Education", "Educ.", (
        ("Principles of Teaching", 1, ("the recitation", "the course of study", "school management")),
        ("History of Education", 1, ("Greek and Roman education", "the Renaissance", "modern school systems")),
        ("Educational Psychology", 1, ("attention", "memory", "the formation of habits")),
        ("Methods in Secondary Instruction", 1, ("the teaching of English", "the teaching of history", "observation of classes")),
        ("School Administration", 2, ("the school board", "the superintendent", "school finance")),
    ), (("Painter", "History of Education"), ("Thorndike", "Principles of Teaching"),
        ("Rosenkranz", "Philosophy of Education"), ("Page", "Theory and Practice of Teaching"),
        ("Dutton", "School Management"))),
    Dept("English", "Eng.", (
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
    Dept("French", "Fr.", (
        ("Elementary French", 0, ("grammar", "pronunciation", "the reading of easy prose")),
        ("Intermediate French", 0, ("composition", "modern prose", "conversation")),
        ("French Literature of the Seventeenth Century", 1, ("Corneille", "Racine", "La Fontaine")),
        ("The French Novel", 1, ("Balzac", "Hugo", "Flaubert")),
        ("Old French", 2, ("phonology", "the Chanson de Roland", "the dialects")),
    ), (("Fraser and Squair", "French Grammar"), ("Chardenal", "Complete French Course"),
        ("Whitney", "Practical French Grammar"), ("Super", "Readings from French History"))),
    Dept("Geology", "Geol.", (
        ("Physical Geography", 0, ("the atmosphere", "rivers and valleys", "glaciers")),
        ("General Geology", 1, ("dynamical geology", "structural geology", "historical geology")),
        ("Mineralogy", 1, ("crystallography", "blowpipe analysis", "determinative mineralogy")),
        ("Economic Geology", 1, ("ore deposits", "coal and petroleum", "building stones")),
        ("Paleontology", 2, ("the invertebrate fossils", "the succession of life", "field collecting")),
    ), (("Dana", "Manual of Geology"), ("LeConte", "Elements of Geology"),
        ("Chamberlin and Salisbury", "College Geology"), ("Dana", "Manual of Mineralogy"),
        ("Davis", "Physical Geography")), lab=True),
    Dept("German", "Ger.", (
        ("Elementary German", 0, ("grammar", "pronunciation", "the reading of easy prose")),
        ("Intermediate German", 0, ("composition", "Schiller", "Lessing")),
        ("Scientific German", 1, ("the reading of scientific texts", "technical vocabulary", "translation")),
        ("German Literature of the Classical Period", 1, ("Klopstock", "Lessing", "Herder")),
        ("Goethe's Faust", 1, ("the first part", "the second part", "the Faust legend")),
        ("Middle High German", 2, ("the Nibelungenlied", "grammar", "Walther von der Vogelweide")),
    ), (("Joynes-Meissner", "German Grammar"), ("Thomas", "Practical German Grammar"),
        ("Whitney", "Compendious German Grammar"), ("Thomas", "Goethe's Faust"))),
    Dept("Greek", "Gk.", (
        ("Elementary Greek", 0, ("forms and syntax", "Xenophon's Anabasis", "prose composition")),
        ("Homer", 0, ("the Iliad", "the Homeric dialect", "prosody")),
        ("Plato", 1, ("the Apology", "the Crito", "the Phaedo")),
        ("Greek Tragedy", 1, ("Sophocles", "Euripides", "the Greek theatre")),
        ("Thucydides", 1, ("the Sicilian expedition", "Greek historiography", "syntax")),
        ("Greek Prose Composition", 2, ("the periodic sentence", "the style of Demosthenes", "translation into Greek")),
    ), (("Goodwin", "Greek Grammar"), ("White", "First Greek Book"), ("Seymour", "Homer's Iliad"),
        ("Jebb", "Sophocles"), ("Liddell and Scott", "Greek-English Lexicon")), classics=True),
    Dept("History", "Hist.", (
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
    Dept("Latin", "Lat.", (
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
    Dept("Mathematics", "Math.", (
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
    Dept("Mechanical Engineering", "M.E.", (
        ("Mechanical Drawing", 0, ("the use of instruments", "projections", "working drawings")),
        ("Shop Work", 0, ("carpentry", "forging", "machine tools")),
        ("Kinematics of Machinery", 1, ("gearing", "cams", "link work")),
        ("Thermodynamics", 1, ("the laws of thermodynamics", "the steam engine", "gas engines")),
        ("Steam Boilers", 1, ("boiler construction", "combustion", "boiler tests")),
        ("Machine Design", 2, ("the strength of machine parts", "shafting", "the design of engines")),
    ), (("Peabody", "Thermodynamics of the Steam Engine"), ("Church", "Mechanics of Engineering"),
        ("Unwin", "Elements of Machine Design"), ("Thurston", "Manual of the Steam Engine")),
        engineering=True),
    Dept("Philosophy", "Phil.", (
        ("Logic", 0, ("the syllogism", "induction", "fallacies")),
        ("Psychology", 0, ("sensation", "perception", "the emotions")),
        ("History of Philosophy", 1, ("Greek philosophy", "Descartes and Spinoza", "Kant")),
        ("Ethics", 1, ("the moral ideal", "duty", "theories of conduct")),
        ("Experimental Psychology", 2, ("reaction time", "psychophysical methods", "laboratory practice")),
        ("Metaphysics", 2, ("the problem of knowledge", "idealism", "the nature of reality")),
    ), (("Jevons", "Elementary Lessons in Logic"), ("James", "Psychology, Briefer Course"),
        ("Porter", "Elements of Intellectual Science"), ("Paulsen", "Introduction to Philosophy"),
        ("Titchener", "A Text-Book of Psychology"), ("Weber", "History of Philosophy"))),
    Dept("Physics", "Phys.", (
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
    Dept("Political Economy", "Econ.", (
        ("Elements of Political Economy", 0, ("production", "exchange", "the distribution of wealth")),
        ("Money and Banking", 1, ("the theory of money", "banking systems", "the national banking act")),
        ("Public Finance", 1, ("taxation", "public debts", "the budget")),
        ("Economic History of the United States", 1, ("the colonial period", "the tariff", "the growth of manufactures")),
        ("Labor Problems", 1, ("trade unions", "wages", "arbitration")),
        ("Statistics", 2, ("the collection of data", "averages", "the census")),
    ), (("Walker", "Political Economy"), ("Mill", "Principles of Political Economy"),
        ("Taussig", "Principles of Economics"), ("Seligman", "Principles of Economics"),
        ("Ely", "Outlines of Economics"), ("Dunbar", "Theory and History of Banking"))),
    Dept("Political Science", "Pol. Sci.", (
        ("American Government", 0, ("the federal Constitution", "state government", "political parties")),
        ("Comparative Politics", 1, ("the government of England", "the government of France", "the German Empire")),
        ("Municipal Government", 1, ("the city charter", "the mayor and council", "municipal reform")),
        ("International Law", 1, ("the rights of neutrals", "treaties", "arbitration")),
        ("Constitutional Law", 2, ("the powers of Congress", "the judiciary", "leading cases")),
    ), (("Bryce", "The American Commonwealth"), ("Wilson", "The State"), ("Woolsey", "International Law"),
        ("Cooley", "Principles of Constitutional Law"), ("Goodnow", "Municipal Government"))),
    Dept("Spanish", "Span.", (
        ("Elementary Spanish", 0, ("grammar", "pronunciation", "the reading of easy prose")),
        ("Spanish Composition and Conversation", 1, ("commercial correspondence", "conversation", "composition")),
        ("Spanish Literature of the Golden Age", 2, ("Cervantes", "Lope de Vega", "the picaresque novel")),
    ), (("Hills and Ford", "Spanish Grammar"), ("Ramsey", "A Text-Book of Modern Spanish"))),
    Dept("Zoology", "Zool.", (
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

SURNAMES = (
    "Abbott", "Adams", "Allen", "Baldwin", "Bradford", "Brown", "Burgess", "Carver", "Chandler",
    "Coolidge", "Cushing", "Dunning", "Dwight", "Eliot", "Emerson", "Fairchild", "Gilman",
    "Hale", "Hastings", "Holbrook", "Howland", "Hyde", "Kellogg", "Kittredge", "Ladd", "Lathrop",
    "Lowell", "Mather", "Merrill", "Morse", "Newell", "Norton", "Osborn", "Palmer", "Perkins",
    "Pickering", "Porter", "Pratt", "Prescott", "Putnam", "Royce", "Sanford", "Sedgwick", "Smith",
    "Stanton", "Sumner", "Thayer", "Tucker", "Tyler", "Ware", "Weld", "Wheeler", "Whitney",
    "Winslow", "Bancroft", "Channing", "Everett", "Fiske", "Greene", "Hooker", "Lyman", "Sherman",
    "Spencer", "Stearns", "Wells", "Woodward", "Goodwin", "Hadley", "Jewett", "Kimball",
)
MEN = ("John", "William", "Charles", "George", "Henry", "Edward", "Frederick", "Arthur", "Albert",
        "Samuel", "Thomas", "James", "Frank", "Herbert", "Walter", "Ernest", "Joseph", "Francis")
WOMEN = ("Mary", "Alice", "Ellen", "Katharine", "Margaret", "Sarah", "Emily", "Florence", "Edith",
          "Helen", "Clara", "Louise", "Harriet", "Grace")
INITIALS = "ABCDEFGHJLMNRSTW"

STATE_NAMES = {
    "CA": "California", "NY": "New York", "MA": "Massachusetts", "IL": "Illinois",
    "OH": "Ohio", "PA": "Pennsylvania", "MI": "Michigan", "VA": "Virginia", "CT": "Connecticut",
    "NJ": "New Jersey", "IN": "Indiana", "WI": "Wisconsin", "MN": "Minnesota", "IA": "Iowa",
    "MO": "Missouri", "TX": "Texas", "GA": "Georgia", "NC": "North Carolina", "MD": "Maryland",
}


SchoolKind = Literal["university", "college", "institute", "high_school", "normal"]


@dataclass(frozen=True)
class School:
    slug: str
    name: str
    kind: SchoolKind
    city: str
    women: bool = False


SCHOOLS: dict[str, tuple[School, ...]] = {
    "CA": (
        School("berkeley", "University of California", "university", "Berkeley"),
        School("stanford", "Leland Stanford Junior University", "university", "Palo Alto"),
        School("pomona", "Pomona College", "college", "Claremont"),
        School("lincoln_high", "Lincoln High School", "high_school", "Los Angeles"),
        School("ucla", "University of California at Los Angeles", "university", "Los Angeles"),
    ),
    "NY": (
        School("columbia", "Columbia University", "university", "New York"),
        School("cornell", "Cornell University", "university", "Ithaca"),
        School("vassar", "Vassar College", "college", "Poughkeepsie", women=True),
        School("erasmus_hall", "Erasmus Hall High School", "high_school", "Brooklyn"),
        School("oswego_normal", "State Normal and Training School", "normal", "Oswego"),
    ),
    "MA": (
        School("mit", "Massachusetts Institute of Technology", "institute", "Boston"),
        School("harvard", "Harvard University", "university", "Cambridge"),
        School("wellesley", "Wellesley College", "college", "Wellesley", women=True),
        School("boston_latin", "Boston Latin School", "high_school", "Boston"),
        School("williams", "Williams College", "college", "Williamstown"),
    ),
    "IL": (
        School("uchicago", "The University of Chicago", "university", "Chicago"),
        School("northwestern", "Northwestern University", "university", "Evanston"),
        School("knox", "Knox College", "college", "Galesburg"),
        School("lincoln_high", "Lincoln High School", "high_school", "Springfield"),
        School("illinois", "University of Illinois", "university", "Urbana"),
    ),
    "OH": (
        School("oberlin", "Oberlin College", "college", "Oberlin"),
        School("ohio_state", "The Ohio State University", "university", "Columbus"),
        School("central_high", "Central High School", "high_school", "Cleveland"),
    ),
    "PA": (
        School("penn", "University of Pennsylvania", "university", "Philadelphia"),
        School("bryn_mawr", "Bryn Mawr College", "college", "Bryn Mawr", women=True),
        School("lehigh", "Lehigh University", "institute", "South Bethlehem"),
    ),
    "MI": (
        School("michigan", "University of Michigan", "university", "Ann Arbor"),
        School("ypsilanti_normal", "Michigan State Normal College", "normal", "Ypsilanti"),
        School("hillsdale", "Hillsdale College", "college", "Hillsdale"),
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
SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("", "", ""),
    ("ADVANCED COURSES", "Advanced ", ""),
    ("SUMMER SESSION", "", "S"),
    ("EXTENSION COURSES", "", "E"),
    ("EVENING CLASSES", "", "N"),
)
RANK_ORDER = ("Professor", "Associate Professor", "Assistant Professor", "Instructor", "Teacher")
PROPER_SUBJECTS = frozenset({"English", "French", "German", "Greek", "Latin", "Spanish"})
NUMBER_WORDS = ("One", "Two", "Three", "Four", "Five", "Six")
_ORDINALS = ("First", "Second", "Third", "Fourth")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("Jan.", "Feb.", "March", "April", "May", "June", "July", "Aug.", "Sept.", "Oct.", "Nov.", "Dec.")


def school_pool(state: str) -> list[School]:
    """Known schools for the state first, then generic town schools (enough for any corpus)."""
    pool = list(SCHOOLS.get(state, ()))
    seen = {s.slug for s in pool}
    for town in _TOWNS:
        for suffix, pattern, kind in _GENERIC_KINDS:
            slug = f"{town.lower()}_{suffix}"
            if slug not in seen:
                seen.add(slug)
                pool.append(School(slug, pattern.format(town=town), kind, town))
    return pool
